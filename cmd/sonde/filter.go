package main

import (
	"errors"
	"fmt"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/bpf/prefilter"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/config"
)

// filterMode is what /api/health says of the filter: where it runs, and why
// when that is not what was asked for.
type filterMode struct {
	Mode string // classic, ebpf or libpcap
	Note string
}

// buildFilter compiles --filter for each interface's link type and puts it
// where --prefilter says. Where eBPF cannot be loaded it says so in one log
// line and returns the classic filter.
func buildFilter(cfg *config.Config, log *zap.Logger) (capture.Filter, *prefilters, filterMode, error) {
	progs, err := compileFilter(cfg.Filter, cfg.Interfaces, cfg.Snaplen)
	if err != nil {
		return nil, nil, filterMode{}, err
	}
	if cfg.Prefilter != "ebpf" {
		return classicOrNil(progs), nil, filterMode{Mode: "classic"}, nil
	}
	if err := prefilter.Supported(); err != nil {
		note := "eBPF prefilter unavailable, running the classic filter: " + err.Error()
		if cfg.FlowCutoffPackets != 0 || cfg.FlowCutoffBytes != 0 || cfg.Sample > 1 {
			note += " (flow cutoff and sampling are off: they need eBPF)"
		}
		log.Warn(note)
		return classicOrNil(progs), nil, filterMode{Mode: "classic", Note: note}, nil
	}
	pf, err := newPrefilters(cfg, progs)
	if err != nil {
		return nil, nil, filterMode{}, err
	}
	return pf, pf, filterMode{Mode: "ebpf"}, nil
}

func classicOrNil(progs map[string]compiled) capture.Filter {
	if progs == nil {
		return nil
	}
	f := interfaceFilters{}
	for name, c := range progs {
		f[name] = c.prog
	}
	return f
}

// compiled is the filter compiled for one interface.
type compiled struct {
	lt   capture.LinkType
	prog capture.ClassicFilter
}

// compileFilter compiles expr for the link type of every interface; nil when
// there is no expression.
func compileFilter(expr string, ifaces []string, snaplen int) (map[string]compiled, error) {
	if expr == "" {
		return nil, nil
	}
	out := map[string]compiled{}
	for _, name := range ifaces {
		lt, err := capture.LinkTypeOf(name)
		if err != nil {
			return nil, fmt.Errorf("compile --filter: %w", err)
		}
		prog, err := bpf.Compile(expr, bpf.LinkType(lt), snaplen)
		if err != nil {
			return nil, usageError{fmt.Errorf("invalid --filter for interface %q: %w", name, err)}
		}
		cf := make(capture.ClassicFilter, len(prog))
		for i, in := range prog {
			cf[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
		}
		out[name] = compiled{lt: lt, prog: cf}
	}
	return out, nil
}

// interfaceFilters holds the classic filter compiled for each interface.
type interfaceFilters map[string]capture.ClassicFilter

func (f interfaceFilters) Attach(iface string, fd int) error {
	prog, ok := f[iface]
	if !ok {
		return fmt.Errorf("no filter compiled for interface %q", iface)
	}
	return prog.Attach(iface, fd)
}

// prefilters is one eBPF prefilter per link type (the filter program differs
// by framing), attached to each interface by its link type.
type prefilters struct {
	byIface map[string]*prefilter.Prefilter
	all     []*prefilter.Prefilter
}

func newPrefilters(cfg *config.Config, progs map[string]compiled) (*prefilters, error) {
	p := &prefilters{byIface: map[string]*prefilter.Prefilter{}}
	byLT := map[capture.LinkType]*prefilter.Prefilter{}
	for _, name := range cfg.Interfaces {
		c, filtered := progs[name]
		key := c.lt // all interfaces share one prefilter when there is no filter
		pf := byLT[key]
		if pf == nil {
			pc := prefilter.Config{
				Snaplen: uint32(cfg.Snaplen), FlowCutoffPackets: uint64(cfg.FlowCutoffPackets),
				FlowCutoffBytes: uint64(cfg.FlowCutoffBytes), Sample: uint32(cfg.Sample),
				RunTimeStats: cfg.PrefilterStats,
			}
			if filtered {
				pc.Filter = c.prog
			}
			var err error
			if pf, err = prefilter.New(pc); err != nil {
				p.Close()
				return nil, fmt.Errorf("prepare the eBPF prefilter: %w", err)
			}
			byLT[key] = pf
			p.all = append(p.all, pf)
		}
		p.byIface[name] = pf
	}
	return p, nil
}

func (p *prefilters) Attach(iface string, fd int) error {
	pf, ok := p.byIface[iface]
	if !ok {
		return fmt.Errorf("no prefilter for interface %q", iface)
	}
	return pf.Attach(iface, fd)
}

// Stats merges the interfaces of every prefilter.
func (p *prefilters) Stats() []prefilter.InterfaceStats {
	var out []prefilter.InterfaceStats
	for _, pf := range p.all {
		out = append(out, pf.Stats()...)
	}
	return out
}

func (p *prefilters) Close() error {
	var errs []error
	for _, pf := range p.all {
		errs = append(errs, pf.Close())
	}
	return errors.Join(errs...)
}
