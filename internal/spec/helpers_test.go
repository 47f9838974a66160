package spec

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// wantError checks the promises every error makes: it is an *Error, it is
// one line, it starts with the file and (when line > 0) the line, and it
// contains each of the given fragments.
func wantError(t *testing.T, err error, file string, line int, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", fragments)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Errorf("error is %T, want *spec.Error: %s", err, msg)
	}
	prefix := file + ": "
	if line > 0 {
		prefix = file + ":" + strconv.Itoa(line) + ": "
	}
	if !strings.HasPrefix(msg, prefix) {
		t.Errorf("error %q does not start with %q", msg, prefix)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}

func ptr[T any](v T) *T { return &v }
