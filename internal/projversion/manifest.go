package projversion

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Versions are any because Cargo allows either "1.2.3" or {workspace = true}
// (usually written version.workspace = true).
type cargoManifest struct {
	Package *struct {
		Version any `toml:"version"`
	} `toml:"package"`
	Workspace *struct {
		Package *struct {
			Version any `toml:"version"`
		} `toml:"package"`
	} `toml:"workspace"`
}

func fromCargo(data []byte) (string, error) {
	var m cargoManifest
	if err := toml.Unmarshal(data, &m); err != nil {
		msg := strings.TrimPrefix(err.Error(), "toml: ")
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, _ := de.Position()
			return "", fmt.Errorf("invalid TOML at line %d: %s", row, msg)
		}
		return "", fmt.Errorf("invalid TOML: %s", msg)
	}
	var ws any
	if m.Workspace != nil && m.Workspace.Package != nil {
		ws = m.Workspace.Package.Version
	}
	if ws != nil {
		if _, ok := ws.(string); !ok {
			return "", errors.New("[workspace.package].version must be a string")
		}
	}
	if m.Package == nil || m.Package.Version == nil {
		if ws == nil {
			return "", noVersionError("no [package].version or [workspace.package].version")
		}
		return ws.(string), nil
	}
	switch v := m.Package.Version.(type) {
	case string:
		return v, nil
	case map[string]any:
		if v["workspace"] == true {
			if ws == nil {
				// Only the root manifest is read; a member's workspace root
				// lives elsewhere and Sando does not go looking for it.
				return "", noVersionError("version.workspace = true but [workspace.package].version is not set in this file")
			}
			return ws.(string), nil
		}
	}
	return "", errors.New(`[package].version must be a string or {workspace = true}`)
}

func fromPackageJSON(data []byte) (string, error) {
	// A map rather than a struct: encoding/json matches struct fields
	// case-insensitively, and "Version" is not what npm reads.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return "", errors.New("invalid JSON: top-level value is not an object")
		}
		return "", fmt.Errorf("invalid JSON: %w", err)
	}
	raw, ok := m["version"]
	if !ok {
		return "", noVersionError(`no "version" field`)
	}
	var v *string
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return "", errors.New(`"version" must be a string`)
	}
	return *v, nil
}
