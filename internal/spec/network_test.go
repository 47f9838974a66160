package spec

import (
	"strings"
	"testing"
)

func TestListenServesDefaultsToMetricsOffLoopback(t *testing.T) {
	tests := []struct {
		listen, serves, want string
	}{
		{"127.0.0.1:9464", "", ListenServesAll},
		{"[::1]:9464", "", ListenServesAll},
		{"localhost:9464", "", ListenServesAll},
		{"0.0.0.0:9464", "", ListenServesMetrics},
		{":9464", "", ListenServesMetrics},
		{"10.0.0.5:9464", "", ListenServesMetrics},
		{"0.0.0.0:9464", "all", ListenServesAll},
		{"127.0.0.1:9464", "metrics", ListenServesMetrics},
	}
	for _, tt := range tests {
		in := "drop_dir: /d\nlisten: \"" + tt.listen + "\"\n"
		if tt.serves != "" {
			in += "api: {listen_serves: " + tt.serves + "}\n"
		}
		c, err := ParseConfig([]byte(in), configFile)
		if err != nil {
			t.Fatal(err)
		}
		if c.API.ListenServes != tt.want {
			t.Errorf("listen %s, listen_serves %q: got %q, want %q", tt.listen, tt.serves, c.API.ListenServes, tt.want)
		}
	}
}

func TestTransfersRefuseWhatIsNoSize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"transfers: {max_file_size: lots}", `transfers.max_file_size: "lots" is not a size; write for example transfers.max_file_size: 4GiB`},
		{"transfers: {max_file_size: 0}", `is not a size`},
		{"transfers: {idle_timeout: 0s}", `transfers.idle_timeout must be more than 0`},
		{"transfers: {poll_timeout: 30}", `has no unit`},
		{"api: {listen_serves: some}", `api.listen_serves`},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte("drop_dir: /d\n"+tt.in+"\n"), configFile)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.want)
		}
	}
}
