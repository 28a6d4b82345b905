"""A Prometheus text exposition as tests read it: every sample by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Scrape = dict[str, dict[Labels, float]]


def parse(body: bytes) -> Scrape:
    """Every sample of a text exposition: name -> labels -> value."""
    samples: Scrape = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(scrape: Scrape, name: str, **labels: str) -> float | None:
    """The value of one series, or None when it is absent."""
    return scrape.get(name, {}).get(frozenset(labels.items()))
