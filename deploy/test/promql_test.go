package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// These tests run against a live Prometheus that scrapes a live sonde with
// deploy/prometheus's rules (deploy/test/monitoring.sh sets that up in a
// network namespace of its own); without SONDE_PROMETHEUS_URL they skip.

func prometheusURL(t *testing.T) string {
	u := os.Getenv("SONDE_PROMETHEUS_URL")
	if u == "" {
		t.Skip("SONDE_PROMETHEUS_URL unset: no live Prometheus (deploy/test/monitoring.sh runs one)")
	}
	return u
}

// query is a PromQL expression and where it comes from.
type query struct{ where, expr string }

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)

// dashboardQueries returns every panel target and every query variable of
// the dashboards, with Grafana's variables replaced as a user selecting "all"
// would have them.
func dashboardQueries(t *testing.T) []query {
	files, _ := filepath.Glob("../grafana/dashboards/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboards under deploy/grafana/dashboards")
	}
	repl := strings.NewReplacer(`$__rate_interval`, "1m", `$job`, "sonde", `$instance`, ".*", `$interface`, ".*", `$fleet_job`, "sonde-fleet")
	var qs []query
	for _, f := range files {
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("%s panel %q", filepath.Base(f), p.Title), repl.Replace(tg.Expr)})
			}
		}
		for _, v := range d.Templating.List {
			q, ok := v.Query.(map[string]any)
			if !ok {
				continue
			}
			m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
			if m == nil {
				t.Fatalf("%s variable %s: query %q is not label_values(expr, label)", f, v.Name, q["query"])
			}
			qs = append(qs, query{fmt.Sprintf("%s variable %s", filepath.Base(f), v.Name), repl.Replace(m[1])})
		}
	}
	return qs
}

type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record string `json:"record"`
			Alert  string `json:"alert"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T) rulesFile {
	b, err := os.ReadFile("../prometheus/sonde.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	if err := yaml.Unmarshal(b, &rf); err != nil { // promtool checks the rules strictly
		t.Fatal(err)
	}
	return rf
}

func instantQuery(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	// A series whose value is NaN (a ratio of zero rates, a quantile of an
	// empty histogram) is no data.
	n := 0
	for _, s := range r.Data.Result {
		if len(s.Value) == 2 && s.Value[1] != "NaN" {
			n++
		}
	}
	return n, nil
}

// TestQueriesReturnData: every dashboard query, every recording rule's
// expression and its recorded series parse and return a number (not NaN:
// the histograms and ratios need traffic) from the live
// sensor. Alert expressions return data only while they fire:
// TestAlertsFire covers them.
func TestQueriesReturnData(t *testing.T) {
	base := prometheusURL(t)
	qs := dashboardQueries(t)
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				qs = append(qs, query{"rule " + r.Record, r.Expr}, query{"recorded " + r.Record, r.Record})
			}
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, q := range qs {
		for {
			n, err := instantQuery(base, q.expr)
			if err != nil {
				t.Fatalf("%s: %s: %v", q.where, q.expr, err)
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: no data for %s", q.where, q.expr)
				break
			}
			time.Sleep(2 * time.Second)
		}
	}
	t.Logf("%d queries returned data", len(qs))
}

// TestAlertsFire waits until every alert named in SONDE_EXPECT_ALERTS
// (comma-separated) fires; a name may carry one label matcher, such as
// SondeAnomalyDetected{kind="syn_flood"}.
func TestAlertsFire(t *testing.T) {
	base := prometheusURL(t)
	want := strings.FieldsFunc(os.Getenv("SONDE_EXPECT_ALERTS"), func(r rune) bool { return r == ',' })
	if len(want) == 0 {
		t.Skip("SONDE_EXPECT_ALERTS unset")
	}
	known := map[string]bool{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			known[r.Alert] = r.Alert != ""
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for _, a := range want {
		name, matcher, _ := strings.Cut(strings.TrimSuffix(a, "}"), "{")
		if !known[name] {
			t.Fatalf("no alert %q in sonde.rules.yml", name)
		}
		if matcher != "" {
			matcher = ", " + matcher
		}
		for {
			n, err := instantQuery(base, fmt.Sprintf(`ALERTS{alertname=%q, alertstate="firing"%s}`, name, matcher))
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				t.Logf("%s fires", a)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not fire", a)
			}
			time.Sleep(2 * time.Second)
		}
	}
}
