"""The nodejs role: Node.js from Debian, which cwltool uses for CWL expressions."""


def test_node_evaluates_javascript(host):
    assert host.check_output("node -e 'console.log([1, 2, 3].map(x => x * x).reduce((a, b) => a + b))'") == "14"


def test_node_is_distribution_package(host):
    assert host.package("nodejs").is_installed
    assert host.check_output("node --version").startswith("v18.")
