package projversion

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func TestRead(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "VERSION"), []byte("9.9.9\n"), 0o600))

	tests := []struct {
		name    string
		files   map[string]string // path -> content; a "->" prefix makes a symlink
		file    string
		sha     string
		want    string
		wantErr string // exact message, or a substring when it starts with "~"
	}{
		// Explicit Cargo.toml.
		{name: "cargo package", files: map[string]string{"Cargo.toml": "[package]\nname = \"a\"\nversion = \"1.2.3\"\n"},
			file: "Cargo.toml", want: "1.2.3"},
		{name: "cargo workspace only", files: map[string]string{"Cargo.toml": "[workspace]\nmembers = []\n[workspace.package]\nversion = \"2.0.0\"\n"},
			file: "Cargo.toml", want: "2.0.0"},
		{name: "cargo version.workspace", files: map[string]string{"Cargo.toml": "[package]\nversion.workspace = true\n[workspace.package]\nversion = \"3.1.0\"\n"},
			file: "Cargo.toml", want: "3.1.0"},
		{name: "cargo inline workspace table", files: map[string]string{"Cargo.toml": "[workspace.package]\nversion = \"3.1.0\"\n[package]\nversion = { workspace = true }\n"},
			file: "Cargo.toml", want: "3.1.0"},
		{name: "cargo package wins over workspace", files: map[string]string{"Cargo.toml": "[package]\nversion = \"1.0.0\"\n[workspace.package]\nversion = \"2.0.0\"\n"},
			file: "Cargo.toml", want: "1.0.0"},
		{name: "cargo in subdir", files: map[string]string{"crates/app/Cargo.toml": "[package]\nversion = \"0.4.0\"\n"},
			file: "crates/app/Cargo.toml", want: "0.4.0"},
		{name: "cargo workspace=true unresolved", files: map[string]string{"Cargo.toml": "[package]\nversion.workspace = true\n"},
			file: "Cargo.toml", wantErr: `version file "Cargo.toml": version.workspace = true but [workspace.package].version is not set in this file`},
		{name: "cargo no version", files: map[string]string{"Cargo.toml": "[package]\nname = \"a\"\n"},
			file: "Cargo.toml", wantErr: `version file "Cargo.toml": no [package].version or [workspace.package].version`},
		{name: "cargo version not string", files: map[string]string{"Cargo.toml": "[package]\nversion = 1\n"},
			file: "Cargo.toml", wantErr: `version file "Cargo.toml": [package].version must be a string or {workspace = true}`},
		{name: "cargo workspace version not string", files: map[string]string{"Cargo.toml": "[workspace.package]\nversion = [1]\n"},
			file: "Cargo.toml", wantErr: `version file "Cargo.toml": [workspace.package].version must be a string`},
		{name: "cargo invalid", files: map[string]string{"Cargo.toml": "[package]\nversion = \n"},
			file: "Cargo.toml", wantErr: `version file "Cargo.toml": invalid TOML at line 2: incomplete number`},
		{name: "cargo empty version", files: map[string]string{"Cargo.toml": "[package]\nversion = \"\"\n"},
			file: "Cargo.toml", wantErr: `version file "Cargo.toml": version is empty`},

		// Explicit package.json.
		{name: "package.json", files: map[string]string{"package.json": `{"name": "a", "version": "4.5.6"}`},
			file: "package.json", want: "4.5.6"},
		{name: "package.json capitalised key ignored", files: map[string]string{"package.json": `{"Version": "4.5.6"}`},
			file: "package.json", wantErr: `version file "package.json": no "version" field`},
		{name: "package.json number", files: map[string]string{"package.json": `{"version": 4}`},
			file: "package.json", wantErr: `version file "package.json": "version" must be a string`},
		{name: "package.json invalid", files: map[string]string{"package.json": `{"version": "1"`},
			file: "package.json", wantErr: `version file "package.json": invalid JSON: unexpected end of JSON input`},
		{name: "package.json array", files: map[string]string{"package.json": `[]`},
			file: "package.json", wantErr: `version file "package.json": invalid JSON: top-level value is not an object`},

		// Explicit plain files.
		{name: "plain first non-empty line", files: map[string]string{"VERSION": "\n  \r\n  v1.0.0  \r\nignored\n"},
			file: "VERSION", want: "v1.0.0"},
		{name: "plain with BOM", files: map[string]string{"VERSION": "\uFEFF1.0\n"}, file: "VERSION", want: "1.0"},
		{name: "plain any name", files: map[string]string{"etc/RELEASE": "2024.06"}, file: "etc/RELEASE", want: "2024.06"},
		{name: "plain empty", files: map[string]string{"VERSION": "\n \n"},
			file: "VERSION", wantErr: `version file "VERSION": empty`},
		{name: "version 128 bytes ok", files: map[string]string{"VERSION": strings.Repeat("1", 128)},
			file: "VERSION", want: strings.Repeat("1", 128)},
		{name: "version too long", files: map[string]string{"VERSION": strings.Repeat("1", 129)},
			file: "VERSION", wantErr: `version file "VERSION": version is longer than 128 bytes`},
		{name: "version control char", files: map[string]string{"VERSION": "1.0\x1b[31m"},
			file: "VERSION", wantErr: `version file "VERSION": version "1.0\x1b[31m" contains a control character`},
		{name: "version invalid utf8", files: map[string]string{"VERSION": "1.0\xff"},
			file: "VERSION", wantErr: `version file "VERSION": version is not valid UTF-8`},
		{name: "file too big", files: map[string]string{"VERSION": strings.Repeat("x", maxFileSize+1)},
			file: "VERSION", wantErr: `version file "VERSION": larger than 1 MiB`},
		{name: "missing explicit file", file: "VERSION",
			wantErr: `version file "VERSION": no such file or directory`},
		{name: "directory", files: map[string]string{"VERSION/x": "1"},
			file: "VERSION", wantErr: `version file "VERSION": not a regular file`},

		// Confinement.
		{name: "absolute path", file: filepath.Join(outside, "VERSION"),
			wantErr: "~must be a relative path inside the worktree"},
		{name: "dotdot escape", file: "../VERSION", wantErr: `version file "../VERSION": must be a relative path inside the worktree`},
		{name: "symlink outside", files: map[string]string{"VERSION": "->" + filepath.Join(outside, "VERSION")},
			file: "VERSION", wantErr: `version file "VERSION": path escapes from parent`},
		{name: "relative symlink outside", files: map[string]string{"sub/VERSION": "->../../" + filepath.Base(outside) + "/VERSION"},
			file: "sub/VERSION", wantErr: `version file "sub/VERSION": path escapes from parent`},
		{name: "symlink inside", files: map[string]string{"real/V": "5.0\n", "VERSION": "->real/V"},
			file: "VERSION", want: "5.0"},

		// Automatic discovery.
		{name: "auto nothing uses sha", sha: sha, want: "0123456"},
		{name: "auto prefers Cargo", sha: sha, want: "1.0.0", files: map[string]string{
			"Cargo.toml": "[package]\nversion = \"1.0.0\"\n", "package.json": `{"version": "2.0.0"}`, "VERSION": "3.0.0"}},
		{name: "auto skips versionless Cargo", sha: sha, want: "2.0.0", files: map[string]string{
			"Cargo.toml": "[workspace]\nmembers = [\"a\"]\n", "package.json": `{"version": "2.0.0"}`}},
		{name: "auto skips versionless package.json", sha: sha, want: "3.0.0", files: map[string]string{
			"package.json": `{"private": true}`, "VERSION": "3.0.0\n"}},
		{name: "auto all versionless uses sha", sha: "ABCDEF0123", want: "ABCDEF0", files: map[string]string{
			"Cargo.toml": "[workspace]\n", "package.json": `{}`, "VERSION": "\n"}},
		{name: "auto broken manifest is an error", sha: sha, files: map[string]string{"package.json": `{`},
			wantErr: `version file "package.json": invalid JSON: unexpected end of JSON input`},
		{name: "auto escaping symlink is an error", sha: sha, files: map[string]string{"VERSION": "->" + filepath.Join(outside, "VERSION")},
			wantErr: `version file "VERSION": path escapes from parent`},
		{name: "auto bad sha", sha: "xyz", wantErr: `~no usable sha: sha "xyz": must be 7 to 40 hex characters, got 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(dir, name)
				require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
				if target, ok := strings.CutPrefix(content, "->"); ok {
					require.NoError(t, os.Symlink(target, p))
				} else {
					require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
				}
			}
			got, err := Read(dir, tt.file, tt.sha)
			switch {
			case tt.wantErr == "":
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
			case strings.HasPrefix(tt.wantErr, "~"):
				require.ErrorContains(t, err, tt.wantErr[1:])
			default:
				require.EqualError(t, err, tt.wantErr)
			}
		})
	}
}

func TestReadMissingDir(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope")
	for _, file := range []string{"VERSION", ""} {
		_, err := Read(missing, file, sha) // must not fall back to the sha
		require.EqualError(t, err, "worktree: open "+missing+": no such file or directory")
		require.ErrorIs(t, err, os.ErrNotExist)
	}
}
