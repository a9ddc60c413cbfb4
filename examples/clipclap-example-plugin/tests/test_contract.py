"""The plugin keeps clipclap's contract: its dataset format, and its head, exercised by
clipclap's contract kit with tiny random inputs (what `clipclap plugins check` runs)."""

import clipclap_example

from clipclap_cli.testing import check_plugin


def test_the_plugin_keeps_the_clipclap_contract():
    results = check_plugin(clipclap_example)
    assert {(r.what, r.name) for r in results} == {("dataset kind", "toy-clusters"), ("fusion head", "bilinear")}
