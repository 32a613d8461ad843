package tasks

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/vocab"
)

func TestGateReport(t *testing.T) {
	t.Parallel()
	report, err := os.ReadFile(filepath.Join("..", "internal", "failure", "testdata", "junit", "surefire_calc.xml"))
	require.NoError(t, err)
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.xml"), report, 0o644))

	wt := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(wt, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(wt, name), []byte(body), 0o644))
	}
	write("reports/TEST-a.xml", `<testsuite><testcase name="ok"/><testcase name="later"><skipped/></testcase></testsuite>`)
	write("reports/TEST-b.xml", string(report))
	write("reports/TEST-c.xml", "not xml at all")
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.xml"), filepath.Join(wt, "reports", "TEST-d.xml")))

	rep, skipped, err := gateReport(wt, "reports/TEST-*.xml")
	require.NoError(t, err)
	require.Equal(t, &vocab.Tests{Passed: 2, Failed: 1, Skipped: 1}, testsOf(rep), "a, b summed; c and the escaping d left out")
	require.Equal(t, "CalcTest.addsNumbers: CalcTest.java:14: java.lang.AssertionError: expected:<4> but was:<3>", rep.First)
	require.Len(t, skipped, 2)
	require.ErrorContains(t, skipped[0], "reports/TEST-c.xml")
	require.ErrorContains(t, skipped[1], "reports/TEST-d.xml")

	rep, skipped, err = gateReport(wt, "target/junit.xml")
	require.NoError(t, err)
	require.Nil(t, rep, "no file written: no counts")
	require.Empty(t, skipped)
	require.Nil(t, testsOf(rep))
}
