package tool

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../rallye"

// rendered is what `helm template` makes of a values file: the objects by
// kind, decoded strictly into the Kubernetes API types (a misspelt field is
// an error), and the hooks' events by kind.
type rendered struct {
	deployment  *appsv1.Deployment
	job         *batchv1.Job
	pdb         *policyv1.PodDisruptionBudget
	hpa         *autoscalingv2.HorizontalPodAutoscaler
	service     *corev1.Service
	secrets     map[string]*corev1.Secret
	monitor     map[string]any
	hookEvents  map[string][]release.HookEvent // by object name
	hookWeights map[string]string
}

func render(t *testing.T, valuesFile string, set map[string]any) (*rendered, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]any{}
	if valuesFile != "" {
		if vals, err = chartutil.ReadValuesFile(chartDir + "/ci/" + valuesFile); err != nil {
			t.Fatal(err)
		}
	}
	vals = chartutil.CoalesceTables(set, vals)
	install := action.NewInstall(&action.Configuration{})
	install.ClientOnly, install.DryRun, install.ReleaseName, install.Namespace = true, true, "r", "sales"
	if install.KubeVersion, err = chartutil.ParseKubeVersion("1.31.0"); err != nil {
		t.Fatal(err)
	}
	rel, err := install.Run(chrt, vals)
	if err != nil {
		return nil, err
	}
	r := &rendered{secrets: map[string]*corev1.Secret{}, hookEvents: map[string][]release.HookEvent{}, hookWeights: map[string]string{}}
	docs := strings.Split(rel.Manifest, "\n---")
	for _, h := range rel.Hooks {
		docs = append(docs, h.Manifest)
		r.hookEvents[h.Name] = h.Events
	}
	for _, doc := range docs {
		var meta struct {
			Kind     string
			Metadata struct {
				Name        string
				Annotations map[string]string
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if w, ok := meta.Metadata.Annotations["helm.sh/hook-weight"]; ok {
			r.hookWeights[meta.Metadata.Name] = w
		}
		strict := func(into any) {
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s %s: %v", meta.Kind, meta.Metadata.Name, err)
			}
		}
		switch meta.Kind {
		case "":
		case "Deployment":
			r.deployment = &appsv1.Deployment{}
			strict(r.deployment)
		case "Job":
			r.job = &batchv1.Job{}
			strict(r.job)
		case "PodDisruptionBudget":
			r.pdb = &policyv1.PodDisruptionBudget{}
			strict(r.pdb)
		case "HorizontalPodAutoscaler":
			r.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
			strict(r.hpa)
		case "Service":
			r.service = &corev1.Service{}
			strict(r.service)
		case "Secret":
			s := &corev1.Secret{}
			strict(s)
			r.secrets[s.Name] = s
		case "ServiceAccount":
			strict(&corev1.ServiceAccount{})
		case "ServiceMonitor":
			strict(&r.monitor)
		default:
			t.Fatalf("unexpected kind %s", meta.Kind)
		}
	}
	return r, nil
}

func env(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

// Every values file of ci/ renders to valid objects with the chart's
// promises: native gRPC probes (readiness on the overall status, liveness
// on "liveness"), resource requests, the migration Job as a pre-install and
// pre-upgrade hook (and the servers not migrating) or migration at start,
// the secrets as environment, the Firebase key mounted, a PDB, and the HPA
// and ServiceMonitor when asked.
func TestChartRenders(t *testing.T) {
	tests := []struct {
		values        string
		job           bool
		hpa, monitor  bool
		pdb           bool
		firebase      bool
		secret        string // the Secret of the server's environment
		migrationFrom [2]string
	}{
		{values: "default-values.yaml", job: true, pdb: true, secret: "r-rallye", migrationFrom: [2]string{"r-rallye-migration", "DATABASE_URL"}},
		{values: "full-values.yaml", job: true, hpa: true, monitor: true, pdb: true, firebase: true, secret: "rallye-env",
			migrationFrom: [2]string{"rallye-migration", "url"}},
		{values: "migrate-at-start-values.yaml", secret: "r-rallye"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.values, "-values.yaml"), func(t *testing.T) {
			r, err := render(t, tt.values, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := r.deployment
			if d == nil || len(d.Spec.Template.Spec.Containers) != 1 {
				t.Fatal("no Deployment with one container")
			}
			c := d.Spec.Template.Spec.Containers[0]
			for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				if p == nil || p.GRPC == nil || p.GRPC.Port != 8080 {
					t.Fatalf("%s probe %+v: want a gRPC probe on 8080", name, p)
				}
			}
			if c.ReadinessProbe.GRPC.Service != nil && *c.ReadinessProbe.GRPC.Service != "" {
				t.Errorf("readiness asks %q, want the overall status", *c.ReadinessProbe.GRPC.Service)
			}
			if s := c.LivenessProbe.GRPC.Service; s == nil || *s != "liveness" {
				t.Errorf("liveness asks %v, want the liveness service", s)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("no resource requests: %v", c.Resources.Requests)
			}
			if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != tt.secret {
				t.Errorf("environment from %+v, want the Secret %s", c.EnvFrom, tt.secret)
			}
			e := env(c)
			if e["RALLYE_ADDR"].Value != "0.0.0.0:8080" {
				t.Errorf("RALLYE_ADDR = %q", e["RALLYE_ADDR"].Value)
			}
			if got, want := e["RALLYE_MIGRATE_ON_START"].Value, map[bool]string{true: "false", false: "true"}[tt.job]; got != want {
				t.Errorf("RALLYE_MIGRATE_ON_START = %q, want %q", got, want)
			}
			if (r.job != nil) != tt.job {
				t.Fatalf("migration Job rendered: %v, want %v", r.job != nil, tt.job)
			}
			if tt.job {
				if ev := r.hookEvents[r.job.Name]; !slices.Equal(ev, []release.HookEvent{release.HookPreInstall, release.HookPreUpgrade}) {
					t.Errorf("the Job runs on %v, want pre-install and pre-upgrade", ev)
				}
				jc := r.job.Spec.Template.Spec.Containers[0]
				if !slices.Equal(jc.Args, []string{"migrate"}) || jc.Image != c.Image {
					t.Errorf("the Job runs %s %v, want the server's image with migrate", jc.Image, jc.Args)
				}
				ref := env(jc)["DATABASE_URL"].ValueFrom
				if ref == nil || ref.SecretKeyRef == nil || [2]string{ref.SecretKeyRef.Name, ref.SecretKeyRef.Key} != tt.migrationFrom {
					t.Errorf("the Job's DATABASE_URL comes from %+v, want %v", ref, tt.migrationFrom)
				}
				if s, ok := r.secrets[tt.migrationFrom[0]]; ok {
					// Created by the chart: it must exist before the Job.
					sw, _ := strconv.Atoi(r.hookWeights[s.Name])
					jw, _ := strconv.Atoi(r.hookWeights[r.job.Name])
					if sw >= jw {
						t.Errorf("the migration Secret (weight %s) is not created before the Job (weight %s)", r.hookWeights[s.Name], r.hookWeights[r.job.Name])
					}
				}
			}
			if (r.pdb != nil) != tt.pdb {
				t.Errorf("PodDisruptionBudget rendered: %v, want %v", r.pdb != nil, tt.pdb)
			}
			if (r.hpa != nil) != tt.hpa {
				t.Errorf("HorizontalPodAutoscaler rendered: %v, want %v", r.hpa != nil, tt.hpa)
			}
			if tt.hpa && d.Spec.Replicas != nil {
				t.Errorf("replicas set (%d) while the HPA scales", *d.Spec.Replicas)
			}
			if (r.monitor != nil) != tt.monitor {
				t.Errorf("ServiceMonitor rendered: %v, want %v", r.monitor != nil, tt.monitor)
			}
			mounted := false
			for _, m := range c.VolumeMounts {
				mounted = mounted || m.Name == "firebase"
			}
			if mounted != tt.firebase || (tt.firebase && e["GOOGLE_APPLICATION_CREDENTIALS"].Value == "") {
				t.Errorf("Firebase key mounted: %v, want %v (GOOGLE_APPLICATION_CREDENTIALS %q)", mounted, tt.firebase, e["GOOGLE_APPLICATION_CREDENTIALS"].Value)
			}
			if r.service == nil || r.service.Spec.Ports[0].AppProtocol == nil || *r.service.Spec.Ports[0].AppProtocol != "kubernetes.io/h2c" {
				t.Errorf("the Service does not announce h2c")
			}
		})
	}
}

// Values a server cannot start with are refused when rendering, with the
// setting named.
func TestChartRefusesIncompleteValues(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"NoDatabase", map[string]any{"secrets": map[string]any{"jwtSecret": strings.Repeat("s", 32)}}, "secrets.databaseUrl"},
		{"NoVerifier", map[string]any{"secrets": map[string]any{"databaseUrl": "postgres://db/rallye"}}, "secrets.jwtSecret"},
		{"ShortSecret", map[string]any{"secrets": map[string]any{"databaseUrl": "postgres://db/rallye", "jwtSecret": "short"}}, "32 bytes"},
		{"FirebaseWithoutKey", map[string]any{"secrets": map[string]any{"existingSecret": "env"},
			"firebase": map[string]any{"enabled": true, "projectId": "p"}}, "firebase.existingSecret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, "", tt.set)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}
