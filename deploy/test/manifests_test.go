package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"sigs.k8s.io/yaml"
)

// decodeStrict decodes one YAML document into the type its kind names,
// refusing unknown and duplicate fields.
func decodeStrict(doc []byte) (any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	var obj any
	switch head.APIVersion + " " + head.Kind {
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "apps/v1 DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "rbac.authorization.k8s.io/v1 Role":
		obj = &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		obj = &rbacv1.RoleBinding{}
	case "scheduling.k8s.io/v1 PriorityClass":
		obj = &schedulingv1.PriorityClass{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		obj = &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		obj = &monitoringv1.PrometheusRule{}
	default:
		return nil, fmt.Errorf("unexpected kind %q %q", head.APIVersion, head.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	return obj, nil
}

func splitDocs(all []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(all, []byte("\n---")) {
		if len(strings.TrimSpace(stripComments(string(d)))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func decodeAll(t *testing.T, name string, all []byte) map[string]any {
	t.Helper()
	objs := map[string]any{}
	for i, d := range splitDocs(all) {
		obj, err := decodeStrict(d)
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		objs[fmt.Sprintf("%T", obj)] = obj
	}
	return objs
}

func helmTemplate(t *testing.T, args ...string) []byte {
	t.Helper()
	helm := os.Getenv("HELM")
	if helm == "" {
		helm = "helm"
	}
	cmd := exec.Command(helm, append([]string{"template", "sonde", "../helm/sonde", "--namespace", "sonde"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func TestStrictDecodeDetectsMisspelling(t *testing.T) {
	_, err := decodeStrict([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrk: true\n"))
	if err == nil || !strings.Contains(err.Error(), "hostNetwrk") {
		t.Fatalf("a misspelt field decoded without error: %v", err)
	}
}

// daemonSetContract checks what the brief of the DaemonSet promises.
func daemonSetContract(t *testing.T, ds *appsv1.DaemonSet, wantCaps []corev1.Capability) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v dnsPolicy %q", spec.HostNetwork, spec.DNSPolicy)
	}
	if spec.PriorityClassName == "" {
		t.Error("no priorityClassName")
	}
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("updateStrategy %q", ds.Spec.UpdateStrategy.Type)
	}
	if len(spec.Tolerations) == 0 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("tolerations %v: want to run on every node", spec.Tolerations)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile is not RuntimeDefault")
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Privileged != nil && *sc.Privileged {
		t.Fatalf("container securityContext %+v", sc)
	}
	if fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" || fmt.Sprint(sc.Capabilities.Add) != fmt.Sprint(wantCaps) {
		t.Errorf("capabilities drop %v add %v, want drop [ALL] add %v", sc.Capabilities.Drop, sc.Capabilities.Add, wantCaps)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["SONDE_NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("SONDE_NODE_NAME is not spec.nodeName: %+v", e)
	}
	if env["SONDE_USER"].Value != "65532:65532" || env["DATA_DIR"].Value != "/data" {
		t.Errorf("SONDE_USER %q DATA_DIR %q", env["SONDE_USER"].Value, env["DATA_DIR"].Value)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/api/health" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/api/ready" {
		t.Error("probes are not /api/health (liveness) and /api/ready (readiness)")
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory request or limit: the kernel capture rings are charged to the pod")
	}
	var hostPath bool
	for _, v := range spec.Volumes {
		hostPath = hostPath || v.Name == "data" && v.HostPath != nil
	}
	if !hostPath {
		t.Error("the ring is not on a hostPath volume")
	}
}

var baseCaps = []corev1.Capability{"NET_RAW", "NET_ADMIN", "CHOWN", "SETUID", "SETGID"}

func TestHelmTemplateDefaults(t *testing.T) {
	objs := decodeAll(t, "helm template", helmTemplate(t))
	ds, ok := objs["*v1.DaemonSet"].(*appsv1.DaemonSet)
	if !ok {
		t.Fatalf("no DaemonSet rendered: %v", objs)
	}
	daemonSetContract(t, ds, baseCaps)
	for _, kind := range []string{"*v1.Service", "*v1.ServiceMonitor", "*v1.PrometheusRule", "*v1.ConfigMap", "*v1.PriorityClass"} {
		if objs[kind] == nil {
			t.Errorf("no %s rendered", kind)
		}
	}
	if svc := objs["*v1.Service"].(*corev1.Service); svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service clusterIP %q, want headless", svc.Spec.ClusterIP)
	}
	cm := objs["*v1.ConfigMap"].(*corev1.ConfigMap)
	if cm.Labels["grafana_dashboard"] != "1" || cm.Data["sonde-node.json"] == "" || cm.Data["sonde-fleet.json"] == "" {
		t.Errorf("dashboard ConfigMap labels %v keys %d", cm.Labels, len(cm.Data))
	}
	if _, ok := objs["*v1.Secret"]; ok {
		t.Error("an API token Secret is rendered while apiToken is off")
	}
}

func TestHelmTemplateOptions(t *testing.T) {
	out := helmTemplate(t, "--set", "createNamespace=true", "--set", "prefilter=ebpf", "--set", "apiToken.enabled=true", "--set", "apiToken.value=t0ken",
		"--set", "interfaces={eth0,eth1}", "--set", "alerts.minRetentionSeconds=3600", "--set-string", "filter=tcp port 443")
	objs := decodeAll(t, "helm template (options)", out)
	ds := objs["*v1.DaemonSet"].(*appsv1.DaemonSet)
	daemonSetContract(t, ds, append(append([]corev1.Capability{}, baseCaps...), "BPF", "PERFMON"))
	env := map[string]string{}
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	for k, v := range map[string]string{"SONDE_INTERFACES": "eth0,eth1", "SONDE_PREFILTER": "ebpf", "SONDE_FILTER": "tcp port 443", "SONDE_API_TOKEN_FILE": "/etc/sonde/api-token/token"} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	ns := objs["*v1.Namespace"].(*corev1.Namespace)
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace labels %v", ns.Labels)
	}
	if objs["*v1.Secret"] == nil {
		t.Error("no API token Secret with apiToken.enabled")
	}
	rule := objs["*v1.PrometheusRule"].(*monitoringv1.PrometheusRule)
	var found bool
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Record == "sonde:ring_min_retention_seconds" {
				found = r.Expr.String() == "vector(3600)"
			}
		}
	}
	if !found {
		t.Error("alerts.minRetentionSeconds did not reach sonde:ring_min_retention_seconds")
	}
}

func TestPlainManifests(t *testing.T) {
	files, err := filepath.Glob("../kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under deploy/kubernetes: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs := decodeAll(t, f, b)
		if ds, ok := objs["*v1.DaemonSet"].(*appsv1.DaemonSet); ok {
			daemonSetContract(t, ds, baseCaps)
		}
		if ns, ok := objs["*v1.Namespace"].(*corev1.Namespace); ok && ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
			t.Errorf("%s: namespace is not pod-security privileged", f)
		}
	}
}
