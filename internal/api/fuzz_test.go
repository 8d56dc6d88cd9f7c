package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzV1Requests drives the /api/v1 routes with hostile query strings,
// paths and bodies: whatever comes in, the server never panics and never
// answers 5xx, and every error is the JSON error shape.
func FuzzV1Requests(f *testing.F) {
	for _, seed := range []struct{ route, query, body string }{
		{"/api/v1/pcap", "from=2026-03-01T12:00:00Z&to=2026-03-01T12:00:01Z", ""},
		{"/api/v1/pcap", "from=1772366400.5&to=1772366401&filter=udp+port+53", ""},
		{"/api/v1/pcap", "from=1&to=0&flow=10.0.0.1:1-10.0.0.2:2/tcp", ""},
		{"/api/v1/pcap", "from=x&to=&filter=tcp[", ""},
		{"/api/v1/captures/", "..%2f..%2fetc%2fpasswd", ""},
		{"/api/v1/snapshots", "", `{"from":"2026-03-01T12:00:00Z","to":"2026-03-01T12:00:01Z","reason":"x","ttl":"1h"}`},
		{"/api/v1/snapshots", "", `{"from":1e400,"to":[],"reason":null}`},
		{"/api/v1/snapshots/", "abc", ""},
	} {
		f.Add(seed.route, seed.query, seed.body)
	}
	r, dir, _ := v1Ring(&testing.T{}, 3, true)
	s, _ := v1Server(&testing.T{}, r, dir, Options{})
	f.Fuzz(func(t *testing.T, route, query, body string) {
		target := route
		if strings.HasSuffix(route, "/") {
			target += url.PathEscape(query)
		} else if query != "" {
			target += "?" + query
		}
		method := http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
		req, err := http.NewRequest(method, "http://sonde"+target, strings.NewReader(body))
		if err != nil || !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t\r\n") {
			return // not a request a client could send
		}
		req.RequestURI = target
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, target, body, res.StatusCode, rec.Body.String())
		}
		if res.StatusCode >= 400 {
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Error == "" {
				t.Fatalf("%s %s: %d with a body that is not a JSON error: %q", method, target, res.StatusCode, rec.Body.String())
			}
		}
	})
}
