package cli

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/adapterd/adapterd/internal/mirror/s3test"
)

func objects(t *testing.T, s *s3test.Server, prefix string) []string {
	t.Helper()
	var out []string
	for o := range s.Client.ListObjects(context.Background(), s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, strings.TrimPrefix(o.Key, prefix))
	}
	sort.Strings(out)
	return out
}

// `adapterd publish` checks the folder as `check` does, then uploads it:
// the files, and the ready marker last; a new version drops the old
// version's files. A bad folder uploads nothing.
func TestPublish(t *testing.T) {
	s := s3test.Start(t, "pub")
	s3test.Env(t)
	dir := mkdir(t, filepath.Join(t.TempDir(), "bot"))
	if err := ggufFolder(801)(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("model: pub-bot\nbase: "+baseModel+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not uploaded"), 0o644)
	url := "s3://pub/team/bot"
	stdout, stderr, code := runCLI(t, nil, "publish", dir, url, "--endpoint", s.Endpoint(), "--path-style")
	if code != 0 {
		t.Fatalf("publish: exit %d, %s", code, stderr)
	}
	if !strings.Contains(stdout, "published") || !strings.Contains(stdout, "then READY") {
		t.Errorf("publish printed %q", stdout)
	}
	if got := strings.Join(objects(t, s, "team/bot/"), " "); got != "READY adapter.yaml lora.gguf" {
		t.Errorf("objects %q", got)
	}

	// A new version as PEFT files: the GGUF goes.
	peftDir := mkdir(t, filepath.Join(t.TempDir(), "bot"))
	if err := peftFolder(802)(peftDir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(peftDir, "adapter.yaml"), []byte("model: pub-bot\nbase: "+baseModel+"\n"), 0o644)
	if _, stderr, code := runCLI(t, nil, "publish", peftDir, url, "--endpoint", s.Endpoint(), "--path-style"); code != 0 {
		t.Fatalf("publish v2: exit %d, %s", code, stderr)
	}
	if got := strings.Join(objects(t, s, "team/bot/"), " "); got != "READY adapter.yaml adapter_config.json adapter_model.safetensors" {
		t.Errorf("objects after v2 %q", got)
	}

	// A folder `check` refuses is not uploaded at all.
	bad := mkdir(t, filepath.Join(t.TempDir(), "bad"))
	os.WriteFile(filepath.Join(bad, "adapter_config.json"), []byte("{"), 0o644)
	stdout, stderr, code = runCLI(t, nil, "publish", bad, "s3://pub/team/bad", "--endpoint", s.Endpoint(), "--path-style")
	checkOneLineErrorCode(t, stdout, stderr, code, 3, "adapter_config.json")
	if got := objects(t, s, "team/bad/"); len(got) != 0 {
		t.Errorf("a refused folder uploaded %q", got)
	}
}
