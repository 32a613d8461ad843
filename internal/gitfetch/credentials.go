package gitfetch

import (
	"net/url"
)

// credentialHelper answers git's credential requests from two variables
// of git's own environment, so a repository's user name and password never
// reach a command line (which any local user can read in /proc/<pid>/cmdline)
// nor a file: the URL git is given has no userinfo. git runs a helper that
// starts with "!" through the shell, with "get", "store" or "erase".
const credentialHelper = `!f() { test "$1" = get && printf 'username=%s\npassword=%s\n' "$SANDO_GIT_USERNAME" "$SANDO_GIT_PASSWORD"; }; f` //nolint:gosec // no credential: a script printing the ones git's environment holds

// splitCredentials returns repo without its userinfo, and the environment
// that hands the user name and password to git through credentialHelper;
// repo as it is and no environment when it carries none (a local path, an
// scp-like address, a URL without userinfo).
func splitCredentials(repo string) (string, []string) {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil || u.Scheme == "" || u.Host == "" {
		return repo, nil
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	u.User = nil
	return u.String(), []string{
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=credential.helper",
		"GIT_CONFIG_VALUE_0=" + credentialHelper,
		"SANDO_GIT_USERNAME=" + user,
		"SANDO_GIT_PASSWORD=" + pass,
	}
}
