package spec

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"

	"github.com/adapterd/adapterd/internal/transfer"
)

// Defaults for the control API and for remote transfers.
const (
	DefaultSocketName           = "adapterd.sock" // under state_dir, unless api.socket says otherwise
	DefaultIdleTimeout          = transfer.DefaultIdleTimeout
	DefaultPollTimeout          = transfer.DefaultPollTimeout
	DefaultMaxFileSize ByteSize = transfer.DefaultMaxFileSize

	ListenServesAll     = "all"     // every read-only endpoint on listen:
	ListenServesMetrics = "metrics" // only /metrics, /healthz and /readyz
)

// APIConfig is who may use the control API, and what listen: serves.
type APIConfig struct {
	// Socket is the unix socket of the control API: every endpoint, for
	// root, the daemon's own user and AdminGroup. "" is
	// <state_dir>/adapterd.sock; ask ControlSocket.
	Socket string `yaml:"socket"`
	// AdminGroup is a group whose members may use the socket.
	AdminGroup string `yaml:"admin_group"`
	// TokenFile holds a bearer token that lets a TCP client (on listen:)
	// make mutating requests; "" means they are refused there.
	TokenFile string `yaml:"token_file"`
	// Hosts are the names besides loopback and listen:'s host that a
	// request's Host header may carry.
	Hosts []string `yaml:"hosts"`
	// ListenServes is ListenServesAll or ListenServesMetrics.
	ListenServes string `yaml:"listen_serves"`
}

// TransferConfig bounds every remote transfer: the mirror's sources and
// fetch-adapter.
type TransferConfig struct {
	// IdleTimeout cuts a transfer after this long without a byte.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PollTimeout cuts one poll of a source, downloads included.
	PollTimeout time.Duration `yaml:"poll_timeout"`
	// MaxFileSize refuses a remote file larger than this, before any
	// byte of it is fetched.
	MaxFileSize ByteSize `yaml:"max_file_size"`
}

// ByteSize is a size in bytes, written in YAML as 4GiB or 500MB.
type ByteSize int64

func (b ByteSize) String() string {
	return strings.Replace(strings.ReplaceAll(humanize.IBytes(uint64(b)), " ", ""), ".0", "", 1)
}

// Set parses a size as the config does, for a command-line flag.
func (b *ByteSize) Set(s string) error {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil || n == 0 || n > 1<<62 {
		return fmt.Errorf("%q is not a size; write for example 4GiB", s)
	}
	*b = ByteSize(n)
	return nil
}

var (
	apiKeys      = []string{"socket", "admin_group", "token_file", "hosts", "listen_serves"}
	transferKeys = []string{"idle_timeout", "poll_timeout", "max_file_size"}
)

func (d *yamlDecoder) api(v *yaml.Node, c *APIConfig) error {
	return d.mapping(v, "api", apiKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "socket":
			c.Socket, err = d.path("api.socket", v)
		case "admin_group":
			c.AdminGroup, err = d.str("api.admin_group", v)
		case "token_file":
			c.TokenFile, err = d.path("api.token_file", v)
		case "hosts":
			c.Hosts, err = d.strList("api.hosts", v)
		case "listen_serves":
			c.ListenServes, err = d.oneOf("api.listen_serves", v, ListenServesAll, ListenServesMetrics)
		}
		return err
	})
}

func (d *yamlDecoder) transfers(v *yaml.Node, c *TransferConfig) error {
	return d.mapping(v, "transfers", transferKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "idle_timeout":
			c.IdleTimeout, err = d.duration("transfers.idle_timeout", v, true)
		case "poll_timeout":
			c.PollTimeout, err = d.duration("transfers.poll_timeout", v, true)
		case "max_file_size":
			c.MaxFileSize, err = d.byteSize("transfers.max_file_size", v)
		}
		return err
	})
}

// byteSize reads 4GiB, 500MB or a plain number of bytes.
func (d *yamlDecoder) byteSize(key string, v *yaml.Node) (ByteSize, error) {
	s, err := d.str(key, v)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil || n == 0 || n > 1<<62 {
		return 0, d.errf(v, "%s: %s is not a size; write for example %s: 4GiB", key, Quote(s), key)
	}
	return ByteSize(n), nil
}

// ControlSocket is the path of the control socket: api.socket, else
// adapterd.sock in state_dir.
func (c *Config) ControlSocket() string {
	if c.API.Socket != "" {
		return c.API.Socket
	}
	return filepath.Join(c.StateDir, DefaultSocketName)
}

// finishNetwork fills the defaults that depend on other keys: a listen:
// address that is not loopback serves only the metrics unless
// api.listen_serves says otherwise, because /v1/adapters shows what
// status files (0640) keep from other users.
func (c *Config) finishNetwork() {
	if c.API.ListenServes == "" {
		c.API.ListenServes = ListenServesAll
		if c.Listen != "" && !IsLoopbackListen(c.Listen) {
			c.API.ListenServes = ListenServesMetrics
		}
	}
}

// IsLoopbackListen reports whether a listen address reaches only this
// host. An empty host ("":9464) listens on every interface.
func IsLoopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	return IsLoopbackHost(host)
}

// IsLoopbackHost reports whether host (a name or an address, without a
// port) is this host's loopback.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}
