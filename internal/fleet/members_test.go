package fleet

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestStatic(t *testing.T) {
	got, err := Static{"10.0.0.1:9750", "[2001:db8::1]:9750"}.Members(context.Background())
	want := []Member{{Name: "10.0.0.1:9750", Addr: "10.0.0.1:9750"}, {Name: "[2001:db8::1]:9750", Addr: "[2001:db8::1]:9750"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v %v", got, err)
	}
}

// dnsServer answers A and AAAA queries for any name with a and aaaa, over
// UDP on loopback.
func dnsServer(t *testing.T, a [][4]byte, aaaa [][16]byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			// The question: labels to the zero byte, then type and class.
			end := 12
			for end < n && q[end] != 0 {
				end += int(q[end]) + 1
			}
			if end+5 > n {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[end+1:])
			var rdata [][]byte
			for _, ip := range a {
				if qtype == 1 {
					rdata = append(rdata, ip[:])
				}
			}
			for _, ip := range aaaa {
				if qtype == 28 {
					rdata = append(rdata, ip[:])
				}
			}
			r := append([]byte{}, q[:2]...)
			r = append(r, 0x81, 0x80, 0, 1)
			r = binary.BigEndian.AppendUint16(r, uint16(len(rdata)))
			r = append(r, 0, 0, 0, 0)
			r = append(r, q[12:end+5]...)
			for _, d := range rdata {
				r = append(r, 0xc0, 12) // the question's name
				r = binary.BigEndian.AppendUint16(r, qtype)
				r = append(r, 0, 1, 0, 0, 0, 30)
				r = binary.BigEndian.AppendUint16(r, uint16(len(d)))
				r = append(r, d...)
			}
			pc.WriteTo(r, from)
		}
	}()
	return pc.LocalAddr().String()
}

// TestDNS: every A and AAAA record of the name is a member, at the port.
func TestDNS(t *testing.T) {
	addr := dnsServer(t, [][4]byte{{198, 18, 0, 2}, {198, 18, 0, 1}}, [][16]byte{{0x20, 0x01, 0x0d, 0xb8, 15: 1}})
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
	got, err := DNS{Name: "sonde-members.monitoring.svc.cluster.local", Port: 9750, Resolver: res}.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{
		{Name: "198.18.0.1:9750", Addr: "198.18.0.1:9750"},
		{Name: "198.18.0.2:9750", Addr: "198.18.0.2:9750"},
		{Name: "[2001:db8::1]:9750", Addr: "[2001:db8::1]:9750"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("members %+v, want %+v", got, want)
	}
}

// TestKubernetes: the running pods of the selector are the members, asked
// of the API with the service account token; pending, deleting and
// IP-less pods are not.
func TestKubernetes(t *testing.T) {
	const podList = `{"kind":"PodList","apiVersion":"v1","items":[
	 {"metadata":{"name":"sonde-b"},"spec":{"nodeName":"worker-2"},"status":{"phase":"Running","podIP":"198.18.1.2"}},
	 {"metadata":{"name":"sonde-a"},"spec":{"nodeName":"worker-1"},"status":{"phase":"Running","podIP":"198.18.1.1"}},
	 {"metadata":{"name":"sonde-c"},"spec":{"nodeName":"worker-3"},"status":{"phase":"Pending"}},
	 {"metadata":{"name":"sonde-d","deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{"nodeName":"worker-4"},"status":{"phase":"Running","podIP":"198.18.1.4"}}]}`
	var gotPath, gotSel, gotAuth string
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotSel, gotAuth = r.URL.Path, r.URL.Query().Get("labelSelector"), r.Header.Get("Authorization")
		if gotAuth != "Bearer sa-token" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"kind":"Status","message":"Unauthorized"}`))
			return
		}
		w.Write([]byte(podList))
	}))
	defer api.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("sa-token\n"), 0o600)
	k := &Kubernetes{API: api.URL, Namespace: "monitoring", Selector: "app.kubernetes.io/name=sonde,app.kubernetes.io/component=sensor", Port: 9750, TokenFile: tokenFile}
	k.client = api.Client()
	got, err := k.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{
		{Name: "sonde-a", Addr: "198.18.1.1:9750", Node: "worker-1"},
		{Name: "sonde-b", Addr: "198.18.1.2:9750", Node: "worker-2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("members %+v, want %+v", got, want)
	}
	if gotPath != "/api/v1/namespaces/monitoring/pods" || gotSel != k.Selector {
		t.Fatalf("asked %s with selector %q", gotPath, gotSel)
	}
	os.WriteFile(tokenFile, []byte("rotated-wrong"), 0o600)
	if _, err := k.Members(context.Background()); err == nil {
		t.Fatal("refused token: no error")
	}
}
