package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Member is one sensor of the fleet.
type Member struct {
	// Name identifies the member in responses: the pod name for
	// Kubernetes, the address otherwise.
	Name string `json:"name"`
	// Addr is the host:port of its API.
	Addr string `json:"address"`
	// Node is the Kubernetes node of a pod ("" when unknown).
	Node string `json:"node,omitempty"`
}

// Discovery lists the members; it is asked again for every request, so
// sensors that come and go are followed.
type Discovery interface {
	Members(ctx context.Context) ([]Member, error)
	// String says where the members come from, for logs and errors.
	String() string
}

// Static is a fixed list of host:port addresses.
type Static []string

// Members returns the list.
func (s Static) Members(context.Context) ([]Member, error) {
	out := make([]Member, len(s))
	for i, a := range s {
		out[i] = Member{Name: a, Addr: a}
	}
	return out, nil
}

func (s Static) String() string { return "static list " + strings.Join(s, ",") }

// DNS is every address of a name, at one port: the A and AAAA records of
// a Kubernetes headless service select the pods behind it.
type DNS struct {
	Name string
	Port int
	// Resolver is net.DefaultResolver when nil.
	Resolver *net.Resolver
}

// Members resolves the name now.
func (d DNS) Members(ctx context.Context) ([]Member, error) {
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupHost(ctx, d.Name)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", d.Name, err)
	}
	slices.Sort(addrs)
	out := make([]Member, 0, len(addrs))
	for _, a := range slices.Compact(addrs) {
		hp := net.JoinHostPort(a, strconv.Itoa(d.Port))
		out = append(out, Member{Name: hp, Addr: hp})
	}
	return out, nil
}

func (d DNS) String() string { return fmt.Sprintf("DNS %s port %d", d.Name, d.Port) }

// ServiceAccount is where a pod finds its Kubernetes API credentials.
const ServiceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

// Kubernetes is the running pods matching a label selector in a
// namespace, read from the Kubernetes API (GET /api/v1/namespaces/NS/pods)
// with a service account token: the pods of the sensors' DaemonSet.
type Kubernetes struct {
	// API is the API server's base URL, such as https://10.96.0.1:443.
	API       string
	Namespace string
	Selector  string // label selector, such as app.kubernetes.io/name=sonde
	Port      int    // the sensors' API port
	// TokenFile is read on every request (tokens are rotated); CAFile
	// verifies the API server.
	TokenFile, CAFile string
	client            *http.Client
}

// InCluster fills the API URL and credentials of the pod it runs in.
func InCluster(namespace, selector string, port int) (*Kubernetes, error) {
	host, p := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || p == "" {
		return nil, errors.New("not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
	}
	return &Kubernetes{API: "https://" + net.JoinHostPort(host, p), Namespace: namespace, Selector: selector, Port: port,
		TokenFile: ServiceAccount + "/token", CAFile: ServiceAccount + "/ca.crt"}, nil
}

func (k *Kubernetes) String() string {
	return fmt.Sprintf("Kubernetes pods of namespace %s with labels %s, port %d", k.Namespace, k.Selector, k.Port)
}

func (k *Kubernetes) httpClient() (*http.Client, error) {
	if k.client != nil {
		return k.client, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if k.CAFile != "" {
		pem, err := os.ReadFile(k.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the Kubernetes CA: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("Kubernetes CA file %s holds no PEM certificate", k.CAFile)
		}
	}
	k.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	return k.client, nil
}

// podList is the part of a PodList the fleet reads.
type podList struct {
	Items []struct {
		Metadata struct {
			Name              string  `json:"name"`
			DeletionTimestamp *string `json:"deletionTimestamp"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
		Status struct {
			Phase string `json:"phase"`
			PodIP string `json:"podIP"`
		} `json:"status"`
	} `json:"items"`
}

// Members lists the running pods now. Pods not running yet, or being
// deleted, or without an IP are not members.
func (k *Kubernetes) Members(ctx context.Context) ([]Member, error) {
	c, err := k.httpClient()
	if err != nil {
		return nil, err
	}
	u := fmt.Sprintf("%s/api/v1/namespaces/%s/pods?labelSelector=%s", strings.TrimSuffix(k.API, "/"), url.PathEscape(k.Namespace), url.QueryEscape(k.Selector))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if k.TokenFile != "" {
		tok, err := os.ReadFile(k.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the service account token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing pods: %s: %.300s", res.Status, body)
	}
	var pl podList
	if err := json.Unmarshal(body, &pl); err != nil {
		return nil, fmt.Errorf("listing pods: decoding the PodList: %w", err)
	}
	var out []Member
	for _, p := range pl.Items {
		if p.Status.Phase != "Running" || p.Status.PodIP == "" || p.Metadata.DeletionTimestamp != nil {
			continue
		}
		out = append(out, Member{Name: p.Metadata.Name, Addr: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(k.Port)), Node: p.Spec.NodeName})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
