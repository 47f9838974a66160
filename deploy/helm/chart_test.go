package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/adapterd/adapterd/internal/spec"
)

const chartDir = "adapterd"

// rendered is one values file's manifests, decoded.
type rendered struct {
	daemonSet      *appsv1.DaemonSet
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	serviceAccount *corev1.ServiceAccount
	networkPolicy  *networkingv1.NetworkPolicy
}

// decodeStrict decodes one manifest into its typed object; a field the
// type does not have is an error, as kubectl's server-side field
// validation would make it.
func decodeStrict(doc []byte, into any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}

func render(t *testing.T, valuesFile string) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := common.ReadValuesFile(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	top, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: "adapterd", Namespace: "gpu", IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, top)
	if err != nil {
		t.Fatalf("helm template with %s: %v", valuesFile, err)
	}
	var r rendered
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		for _, doc := range strings.Split(out[name], "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			var obj any
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 DaemonSet":
				r.daemonSet = &appsv1.DaemonSet{}
				obj = r.daemonSet
			case "v1 ConfigMap":
				r.configMap = &corev1.ConfigMap{}
				obj = r.configMap
			case "v1 Secret":
				r.secret = &corev1.Secret{}
				obj = r.secret
			case "v1 ServiceAccount":
				r.serviceAccount = &corev1.ServiceAccount{}
				obj = r.serviceAccount
			case "networking.k8s.io/v1 NetworkPolicy":
				r.networkPolicy = &networkingv1.NetworkPolicy{}
				obj = r.networkPolicy
			default:
				t.Fatalf("%s renders %s %s, which this test does not know; add its type", name, head.APIVersion, head.Kind)
			}
			if err := decodeStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s with %s does not decode strictly into %s: %v\n%s", name, filepath.Base(valuesFile), head.Kind, err, doc)
			}
		}
	}
	if r.daemonSet == nil || r.configMap == nil {
		t.Fatalf("%s rendered no DaemonSet or no ConfigMap", valuesFile)
	}
	return r
}

func valuesFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("values files in %s/ci: %q, %v; want several", chartDir, files, err)
	}
	return files
}

// TestChartRendersValidManifestsForEveryValuesFile renders the chart with
// each values file in adapterd/ci and checks what the issue asks of the
// DaemonSet: GPU nodes only, the hardening of the systemd unit, probes on
// /healthz and /readyz, metrics annotations, and a config that adapterd's
// own strict parser accepts.
func TestChartRendersValidManifestsForEveryValuesFile(t *testing.T) {
	for _, vf := range valuesFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(vf), "-values.yaml"), func(t *testing.T) {
			r := render(t, vf)
			ds := r.daemonSet
			pod := ds.Spec.Template.Spec
			if pod.NodeSelector["nvidia.com/gpu.present"] != "true" {
				t.Errorf("nodeSelector %v does not select GPU nodes", pod.NodeSelector)
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			c := pod.Containers[0]

			psc, sc := pod.SecurityContext, c.SecurityContext
			switch {
			case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
				t.Error("pod securityContext lacks runAsNonRoot: true")
			case psc.RunAsUser == nil || *psc.RunAsUser == 0:
				t.Error("pod runs as uid 0")
			case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Error("container root filesystem is writable")
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Error("container allows privilege escalation")
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
				t.Errorf("capabilities %+v, want drop [ALL] and none added", sc.Capabilities)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the pod mounts a service account token; adapterd never calls the API")
			}

			probe := func(what string, p *corev1.Probe, path string) {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
					t.Errorf("%s probe %+v, want GET %s on port http", what, p, path)
				}
			}
			probe("liveness", c.LivenessProbe, "/healthz")
			probe("readiness", c.ReadinessProbe, "/readyz")
			if len(c.Ports) != 1 || c.Ports[0].Name != "http" {
				t.Fatalf("ports %+v, want one named http", c.Ports)
			}
			port := c.Ports[0].ContainerPort
			ann := ds.Spec.Template.Annotations
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != fmt.Sprint(port) || ann["prometheus.io/path"] != "/metrics" {
				t.Errorf("pod annotations %v lack the metrics annotations for port %d", ann, port)
			}
			if !slices.Equal(c.Args, []string{"--config", "/etc/adapterd/config.yaml"}) || len(c.Command) != 0 {
				t.Errorf("command %q args %q: want the image's entrypoint (adapterd run) with --config", c.Command, c.Args)
			}

			// The config: adapterd's own parser, strict as at startup.
			text, ok := r.configMap.Data["config.yaml"]
			if !ok {
				t.Fatalf("ConfigMap has no config.yaml: %v", r.configMap.Data)
			}
			t.Setenv("OLLAMA_HOST", "")
			cfg, err := spec.ParseConfig([]byte(text), "config.yaml from "+filepath.Base(vf))
			if err != nil {
				t.Fatalf("adapterd rejects the rendered config: %v\n%s", err, text)
			}
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m
			}
			for _, dir := range []string{cfg.DropDir, cfg.StateDir} {
				if m, ok := mounts[dir]; !ok || m.ReadOnly {
					t.Errorf("%s (from the config) is not a writable volume mount: %+v", dir, c.VolumeMounts)
				}
			}
			if m, ok := mounts["/etc/adapterd"]; !ok || !m.ReadOnly {
				t.Errorf("/etc/adapterd is not the read-only config mount")
			}
			if _, port2, _ := strings.Cut(cfg.Listen, ":"); port2 != fmt.Sprint(port) {
				t.Errorf("config listens on %q, the container port is %d", cfg.Listen, port)
			}

			// Ollama: the node's, through the downward API, unless a host
			// is set in the values.
			env := map[string]corev1.EnvVar{}
			for _, e := range c.Env {
				env[e.Name] = e
			}
			var raw struct {
				Ollama struct{ Host string } `json:"ollama"`
			}
			if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
				t.Fatal(err)
			}
			if raw.Ollama.Host == "" {
				if e := env["HOST_IP"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
					t.Errorf("HOST_IP is not the node's IP: %+v", e)
				}
				if !strings.HasPrefix(env["OLLAMA_HOST"].Value, "http://$(HOST_IP):") {
					t.Errorf("OLLAMA_HOST = %q, want the node's Ollama", env["OLLAMA_HOST"].Value)
				}
			} else if _, set := env["OLLAMA_HOST"]; set {
				t.Errorf("the config sets ollama.host %s and the pod also sets OLLAMA_HOST", cfg.Ollama.Host)
			}

			// Credentials come from a Secret, never from the ConfigMap.
			if strings.Contains(strings.ToLower(text), "secret") {
				t.Errorf("the ConfigMap mentions a secret:\n%s", text)
			}
			if len(cfg.Sources) > 0 {
				if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil {
					t.Errorf("S3 sources but no Secret in envFrom: %+v", c.EnvFrom)
				} else if r.secret != nil && r.secret.Name != c.EnvFrom[0].SecretRef.Name {
					t.Errorf("envFrom names Secret %s, the chart made %s", c.EnvFrom[0].SecretRef.Name, r.secret.Name)
				}
			}
			if r.secret != nil {
				for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
					if r.secret.StringData[k] == "" {
						t.Errorf("the chart's Secret has no %s", k)
					}
				}
			}

			if np := r.networkPolicy; np != nil {
				if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{"Ingress", "Egress"}) || len(np.Spec.Ingress) == 0 || len(np.Spec.Egress) == 0 {
					t.Errorf("NetworkPolicy does not restrict both directions: %+v", np.Spec)
				}
				if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "adapterd" {
					t.Errorf("NetworkPolicy selects %v", np.Spec.PodSelector.MatchLabels)
				}
			}
		})
	}
}

// TestChartNamesWhatEachValuesFileUses pins that the values files between
// them exercise each choice of the chart: hostPath and emptyDir, a made
// and an existing Secret, the NetworkPolicy, and the merge strategy's
// model store, so no template branch goes unrendered.
func TestChartNamesWhatEachValuesFileUses(t *testing.T) {
	seen := map[string]bool{}
	for _, vf := range valuesFiles(t) {
		r := render(t, vf)
		pod := r.daemonSet.Spec.Template.Spec
		for _, v := range pod.Volumes {
			switch {
			case v.Name == "drop" && v.HostPath != nil:
				seen["drop hostPath"] = true
			case v.Name == "drop" && v.EmptyDir != nil:
				seen["drop emptyDir"] = true
			case v.Name == "ollama-models" && v.HostPath != nil:
				seen["ollama model store"] = true
			}
		}
		if r.secret != nil {
			seen["chart-made Secret"] = true
		} else if len(pod.Containers[0].EnvFrom) > 0 {
			seen["existing Secret"] = true
		}
		if r.networkPolicy != nil {
			seen["NetworkPolicy"] = true
		}
	}
	for _, want := range []string{"drop hostPath", "drop emptyDir", "ollama model store", "chart-made Secret", "existing Secret", "NetworkPolicy"} {
		if !seen[want] {
			t.Errorf("no values file in %s/ci renders a %s", chartDir, want)
		}
	}
}

// TestChartLints runs helm lint's checks with every values file.
func TestChartLints(t *testing.T) {
	for _, vf := range valuesFiles(t) {
		vals, err := common.ReadValuesFile(vf)
		if err != nil {
			t.Fatal(err)
		}
		res := lint.RunAll(chartDir, vals, "gpu")
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint with %s: %s", filepath.Base(vf), m)
			}
		}
	}
}

// TestStrictDecodingCatchesAMisspeltField: the decoding above would let a
// typo through if it were lenient; this proves it is not.
func TestStrictDecodingCatchesAMisspeltField(t *testing.T) {
	doc := "apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      nodeSelecter: {a: b}\n"
	if err := decodeStrict([]byte(doc), &appsv1.DaemonSet{}); err == nil {
		t.Fatal("a DaemonSet with nodeSelecter decoded without error")
	}
}

// TestInstallDocValuesRender renders the values example in
// docs/install.md, so the page cannot teach a value the chart lacks.
func TestInstallDocValuesRender(t *testing.T) {
	md, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "```yaml\n# values.yaml\n")
	if !ok {
		t.Fatal("docs/install.md has no ```yaml block starting # values.yaml")
	}
	block, _, _ := strings.Cut(rest, "```")
	f := filepath.Join(t.TempDir(), "install-md-values.yaml")
	if err := os.WriteFile(f, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	vals, err := common.ReadValuesFile(f)
	if err != nil {
		t.Fatal(err)
	}
	// Every top-level key must be one of the chart's values.
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for k := range vals {
		if _, ok := ch.Values[k]; !ok {
			t.Errorf("docs/install.md sets %s, which the chart's values.yaml does not have", k)
		}
	}
	r := render(t, f)
	if _, err := spec.ParseConfig([]byte(r.configMap.Data["config.yaml"]), "config.yaml from docs/install.md"); err != nil {
		t.Errorf("adapterd rejects the config docs/install.md renders: %v", err)
	}
	if got := r.daemonSet.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/adapterd:1.2.3" {
		t.Errorf("image %q", got)
	}
}
