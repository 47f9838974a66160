package spec

import (
	"path/filepath"
	"testing"
)

// The shipped config.example.yaml documents every key; it must parse.
func TestConfigExampleParses(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DropDir != "/var/lib/adapterd/drop" || cfg.Settle != DefaultSettle || cfg.Listen != DefaultListen {
		t.Errorf("example config decoded to %+v", cfg)
	}
}
