package release

import "testing"

func TestVersionFromDescribeOrdersForDpkgAndRpm(t *testing.T) {
	const sha = "8656add0123456789abcdef0123456789abcdef0"
	tests := []struct {
		describe string
		want     string
	}{
		{"", "0.0.0+git208.g8656add"},
		{"-dirty", "0.0.0+git208.g8656add.dirty"},
		{"v1.2.3-0-g8656add", "1.2.3"},
		{"v1.2.3-0-g8656add-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-g8656add", "1.2.3+git4.g8656add"},
		{"v1.2.0-rc1-0-g8656add", "1.2.0~rc1"},
		{"v1.2.0-rc1-2-g8656add", "1.2.0~rc1+git2.g8656add"},
	}
	for _, tt := range tests {
		got, err := versionFromDescribe(tt.describe, 208, sha)
		if err != nil || got != tt.want {
			t.Errorf("versionFromDescribe(%q) = %q, %v; want %q", tt.describe, got, err, tt.want)
		}
	}
	for _, bad := range []string{"1.2.3-0-g8656add", "vnext-0-g8656add", "v1.2.3", "v1.2.3-x-g8656add"} {
		if got, err := versionFromDescribe(bad, 208, sha); err == nil {
			t.Errorf("versionFromDescribe(%q) = %q, want an error", bad, got)
		}
	}
}
