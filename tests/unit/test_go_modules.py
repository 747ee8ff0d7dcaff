"""Go build info's module lines (the text `go version -m` prints), replace directives included."""

from __future__ import annotations

from dockyard.scan.detectors.golang import modules

MODINFO = "\n".join(
    [
        "path\texample.com/app",
        "mod\texample.com/app\t(devel)\t",
        "=>\t../app\t\t",  # the main module replaced by a directory: not a dependency
        "dep\tgithub.com/spf13/cobra\tv1.8.0\th1:abc=",
        "dep\tgolang.org/x/net\tv0.1.0\th1:def=",
        "=>\tgolang.org/x/net\tv0.23.0\th1:ghi=",  # what was built is the replacement
        "dep\texample.com/forked\tv1.0.0\th1:jkl=",
        "=>\t./third_party/forked\t\t",  # replaced by local code: no version to report
        "build\t-compiler=gc",
    ]
)


def test_replacements_apply_to_the_module_line_before_them() -> None:
    found = [(p.name, p.version, p.purl) for p in modules(MODINFO, "usr/bin/app")]
    assert found == [
        ("github.com/spf13/cobra", "v1.8.0", "pkg:golang/github.com/spf13/cobra@v1.8.0"),
        ("golang.org/x/net", "v0.23.0", "pkg:golang/golang.org/x/net@v0.23.0"),
    ]
