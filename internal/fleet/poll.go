package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/api"
)

// DefaultPollInterval is how often the members' health is polled.
const DefaultPollInterval = 15 * time.Second

// memberState is one member's last health poll.
type memberState struct {
	up  bool
	err string // why it is down
}

// pollState is the last poll of every member, for /api/health.
type pollState struct {
	mu      sync.Mutex
	polled  bool
	members []Member
	state   map[string]memberState
}

// poll asks every member's /api/health now and updates sonde_fleet_member_up
// and the fleet's own health. A member is up when it answers 200 with
// status "ok"; unreachable, refusing the fleet's token or degraded, it is
// down. Members discovery no longer lists lose their series.
func (s *Server) poll(ctx context.Context) {
	members, err := s.cfg.Discovery.Members(ctx)
	s.metrics.discovered(ctx, members, err)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("member discovery failed (health poll)", zap.Error(err))
		}
		return
	}
	replies := s.cfg.Client.fanout(ctx, members, http.MethodGet, "/api/health")
	state := make(map[string]memberState, len(members))
	for _, rp := range replies {
		st := memberState{up: rp.err == nil}
		if rp.err == nil {
			var hb struct {
				Status string `json:"status"`
			}
			switch err := json.NewDecoder(io.LimitReader(rp.body, 1<<20)).Decode(&hb); {
			case err != nil:
				st = memberState{err: fmt.Sprintf("decoding its health: %v", err)}
			case hb.Status != api.StatusOK:
				st = memberState{err: fmt.Sprintf("its health is %q", hb.Status)}
			}
		} else {
			st.err = rp.err.Error()
		}
		rp.close()
		if ctx.Err() != nil {
			return // stopping: keep the last state rather than all down
		}
		state[rp.member.Name] = st
	}
	s.metrics.forget(members)
	for _, m := range members {
		s.metrics.track(m.Name)
		v := 0.0
		if state[m.Name].up {
			v = 1
		}
		s.metrics.memberUp.WithLabelValues(m.Name).Set(v)
	}

	s.polls.mu.Lock()
	old := s.polls.state
	s.polls.polled, s.polls.members, s.polls.state = true, members, state
	s.polls.mu.Unlock()
	for _, m := range members {
		st := state[m.Name]
		prev, seen := old[m.Name]
		switch {
		case !st.up && (!seen || prev.up):
			s.log.Warn("member down", zap.String("member", m.Name), zap.String("address", m.Addr), zap.String("error", st.err))
		case st.up && seen && !prev.up:
			s.log.Info("member up", zap.String("member", m.Name), zap.String("address", m.Addr))
		}
	}
}

// pollLoop polls every interval until ctx ends, the first time at once.
func (s *Server) pollLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// downMembers is the members down at the last poll, in discovery order,
// and how many members it found; ok is false before the first poll.
func (s *Server) downMembers() (down []MemberStatus, members int, ok bool) {
	s.polls.mu.Lock()
	defer s.polls.mu.Unlock()
	for _, m := range s.polls.members {
		if st := s.polls.state[m.Name]; !st.up {
			down = append(down, MemberStatus{Name: m.Name, Address: m.Addr, Node: m.Node, Status: "down", Error: st.err})
		}
	}
	return down, len(s.polls.members), s.polls.polled
}
