"""What a run records about its environment, read quickly (issue 11: start-up time)."""

from __future__ import annotations

import importlib.metadata

from striate.tracking import capture


def test_packages_reads_the_same_names_and_versions_as_the_full_metadata():
    # capture.packages reads only the head of each METADATA file; importlib's parser reads all of it.
    full = {}
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"]:
            full[dist.metadata["Name"].lower()] = dist.version
    assert capture.packages() == dict(sorted(full.items()))
    assert "torch" in full and "striate" in full
