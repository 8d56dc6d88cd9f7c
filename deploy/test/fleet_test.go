package test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// rendered is every object of a helm template run, by kind and name.
type rendered map[string]any

func renderAll(t *testing.T, args ...string) rendered {
	t.Helper()
	objs := rendered{}
	for i, d := range splitDocs(helmTemplate(t, args...)) {
		obj, err := decodeStrict(d)
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		kind := fmt.Sprintf("%T", obj)
		kind = kind[strings.LastIndex(kind, ".")+1:]
		objs[kind+"/"+obj.(interface{ GetName() string }).GetName()] = obj
	}
	return objs
}

func keysOf(m rendered) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// matches is a label selector of equalities against a pod's labels.
func matches(sel, podLabels map[string]string) bool {
	for k, v := range sel {
		if podLabels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// parseSelector reads a selector of the form a=b,c=d.
func parseSelector(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil
		}
		out[k] = v
	}
	return out
}

var fleetArgs = []string{"--set", "apiToken.enabled=true", "--set", "apiToken.value=sensor-token", "--set", "fleet.enabled=true", "--set", "fleet.apiToken.value=fleet-token"}

// fleetContract checks the fleet Deployment and Service promise: a
// non-root pod with no capabilities that runs `sonde fleet`, reads the
// sensors' token and its own from Secrets the chart renders, is reached
// through its Service, and is never selected as a sensor.
func fleetContract(t *testing.T, objs rendered) (env map[string]string) {
	t.Helper()
	dep, ok := objs["Deployment/sonde-fleet"].(*appsv1.Deployment)
	if !ok {
		t.Fatalf("no Deployment sonde-fleet rendered: %v", keysOf(objs))
	}
	ds := objs["DaemonSet/sonde"].(*appsv1.DaemonSet)
	podLabels := dep.Spec.Template.Labels
	if matches(ds.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("the DaemonSet's selector matches the fleet's pods %v", podLabels)
	}
	sensors := objs["Service/sonde"].(*corev1.Service)
	if matches(sensors.Spec.Selector, podLabels) {
		t.Errorf("the sensors' Service selects the fleet's pods")
	}
	svc, ok := objs["Service/sonde-fleet"].(*corev1.Service)
	if !ok || !matches(svc.Spec.Selector, podLabels) || svc.Spec.Ports[0].Port != 9751 {
		t.Fatalf("fleet Service %+v does not reach the fleet's pods on 9751", svc)
	}
	spec := dep.Spec.Template.Spec
	if spec.HostNetwork || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("fleet pod: hostNetwork %v, runAsNonRoot %v", spec.HostNetwork, spec.SecurityContext.RunAsNonRoot)
	}
	c := spec.Containers[0]
	if len(c.Args) != 1 || c.Args[0] != "fleet" {
		t.Errorf("fleet container args %v", c.Args)
	}
	if sc := c.SecurityContext; sc == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("fleet container securityContext %+v", c.SecurityContext)
	}
	env = map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	// Each token file is a key of a Secret the chart renders, mounted there.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			continue
		}
		sec, ok := objs["Secret/"+v.Secret.SecretName].(*corev1.Secret)
		if !ok || sec.StringData["token"] == "" {
			t.Errorf("volume %s: Secret %s not rendered with a token", v.Name, v.Secret.SecretName)
		}
	}
	for k, want := range map[string]string{"SONDE_FLEET_MEMBER_TOKEN_FILE": mounts["member-token"] + "/token", "SONDE_FLEET_API_TOKEN_FILE": mounts["fleet-token"] + "/token"} {
		if env[k] != want || mounts["member-token"] == "" || mounts["fleet-token"] == "" {
			t.Errorf("env %s = %q, want %q", k, env[k], want)
		}
	}
	if sec := objs["Secret/sonde-fleet-api-token"].(*corev1.Secret); sec.StringData["token"] != "fleet-token" {
		t.Errorf("fleet token Secret %v", sec.StringData)
	}
	fleetServiceMonitor(t, objs, svc)
	return env
}

// fleetServiceMonitor checks the fleet's scrape: a ServiceMonitor that
// selects the fleet's Service alone, scrapes /metrics on a port the Service
// names, and names the job sonde-fleet; the sensors' ServiceMonitor does
// not select the fleet.
func fleetServiceMonitor(t *testing.T, objs rendered, svc *corev1.Service) {
	t.Helper()
	sm, ok := objs["ServiceMonitor/sonde-fleet"].(*monitoringv1.ServiceMonitor)
	if !ok {
		t.Fatalf("no ServiceMonitor sonde-fleet rendered: %v", keysOf(objs))
	}
	if !matches(sm.Spec.Selector.MatchLabels, svc.Labels) || matches(sm.Spec.Selector.MatchLabels, objs["Service/sonde"].(*corev1.Service).Labels) {
		t.Errorf("fleet ServiceMonitor selector %v: want the fleet Service %v only", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
	if sensors := objs["ServiceMonitor/sonde"].(*monitoringv1.ServiceMonitor); matches(sensors.Spec.Selector.MatchLabels, svc.Labels) {
		t.Error("the sensors' ServiceMonitor selects the fleet Service")
	}
	if job := svc.Labels[sm.Spec.JobLabel]; job != "sonde-fleet" {
		t.Errorf("fleet scrape job %q (jobLabel %q), want sonde-fleet", job, sm.Spec.JobLabel)
	}
	if len(sm.Spec.NamespaceSelector.MatchNames) != 1 || sm.Spec.NamespaceSelector.MatchNames[0] != "sonde" {
		t.Errorf("fleet ServiceMonitor namespaces %v", sm.Spec.NamespaceSelector.MatchNames)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Port == "" {
		t.Fatalf("fleet ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
	}
	var named bool
	for _, p := range svc.Spec.Ports {
		named = named || p.Name == sm.Spec.Endpoints[0].Port
	}
	if !named {
		t.Errorf("fleet ServiceMonitor scrapes port %q, which the fleet Service does not name", sm.Spec.Endpoints[0].Port)
	}
}

// TestHelmFleetServiceMonitorGated: serviceMonitor.enabled=false renders
// the fleet without a ServiceMonitor, as it does the sensors.
func TestHelmFleetServiceMonitorGated(t *testing.T) {
	objs := renderAll(t, append(fleetArgs, "--set", "serviceMonitor.enabled=false")...)
	for k := range objs {
		if strings.HasPrefix(k, "ServiceMonitor/") {
			t.Errorf("%s rendered with serviceMonitor.enabled=false", k)
		}
	}
	if objs["Deployment/sonde-fleet"] == nil {
		t.Error("no fleet Deployment")
	}
}

func TestHelmFleetDNS(t *testing.T) {
	objs := renderAll(t, fleetArgs...)
	env := fleetContract(t, objs)
	if env["SONDE_FLEET_MEMBER_POLL_INTERVAL"] != "15s" {
		t.Errorf("SONDE_FLEET_MEMBER_POLL_INTERVAL %q, want the default 15s", env["SONDE_FLEET_MEMBER_POLL_INTERVAL"])
	}
	if env["SONDE_FLEET_MEMBERS_DNS"] != "sonde.sonde.svc.cluster.local:9750" {
		t.Errorf("SONDE_FLEET_MEMBERS_DNS %q", env["SONDE_FLEET_MEMBERS_DNS"])
	}
	if objs["Deployment/sonde-fleet"].(*appsv1.Deployment).Spec.Template.Spec.ServiceAccountName != "" || objs["Role/sonde-fleet"] != nil {
		t.Error("DNS discovery renders Kubernetes API access")
	}
	// The sensors' headless Service is what the name resolves to.
	if objs["Service/sonde"].(*corev1.Service).Spec.ClusterIP != corev1.ClusterIPNone {
		t.Error("the sensors' Service is not headless: its name would resolve to one virtual IP")
	}
}

func TestHelmFleetKubernetes(t *testing.T) {
	objs := renderAll(t, append(fleetArgs, "--set", "fleet.discovery=kubernetes")...)
	env := fleetContract(t, objs)
	ds := objs["DaemonSet/sonde"].(*appsv1.DaemonSet)
	ns, sel, _ := strings.Cut(env["SONDE_FLEET_MEMBERS_K8S"], "/")
	if ns != "sonde" || !matches(parseSelector(sel), ds.Spec.Template.Labels) || env["SONDE_FLEET_MEMBER_PORT"] != "9750" {
		t.Errorf("SONDE_FLEET_MEMBERS_K8S %q (port %q) does not select the DaemonSet's pods %v", env["SONDE_FLEET_MEMBERS_K8S"], env["SONDE_FLEET_MEMBER_PORT"], ds.Spec.Template.Labels)
	}
	dep := objs["Deployment/sonde-fleet"].(*appsv1.Deployment)
	sa := dep.Spec.Template.Spec.ServiceAccountName
	if _, ok := objs["ServiceAccount/"+sa].(*corev1.ServiceAccount); !ok || sa == "" {
		t.Fatalf("fleet ServiceAccount %q not rendered", sa)
	}
	role := objs["Role/sonde-fleet"].(*rbacv1.Role)
	rb := objs["RoleBinding/sonde-fleet"].(*rbacv1.RoleBinding)
	if len(role.Rules) != 1 || strings.Join(role.Rules[0].Resources, ",") != "pods" || strings.Join(role.Rules[0].Verbs, ",") != "list" {
		t.Errorf("Role rules %+v: want list pods only", role.Rules)
	}
	if rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa || rb.Subjects[0].Namespace != "sonde" {
		t.Errorf("RoleBinding %+v does not bind the Role to the fleet's ServiceAccount", rb)
	}
}

// TestHelmFleetRefusals: the fleet without the sensors' token, or without
// its own, does not render.
func TestHelmFleetRefusals(t *testing.T) {
	helm := os.Getenv("HELM")
	if helm == "" {
		helm = "helm"
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "fleet.enabled=true", "--set", "fleet.apiToken.value=x"}, "needs apiToken.enabled"},
		{[]string{"--set", "fleet.enabled=true", "--set", "apiToken.enabled=true", "--set", "apiToken.value=x"}, "fleet.apiToken"},
		{append(fleetArgs, "--set", "fleet.discovery=mdns"), `fleet.discovery "mdns"`},
	} {
		out, err := exec.Command(helm, append([]string{"template", "sonde", "../helm/sonde", "--namespace", "sonde"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("helm template %v: %v, output does not say %q: %.300s", c.args, err, c.want, out)
		}
	}
}
