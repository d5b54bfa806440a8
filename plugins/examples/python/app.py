"""Keeps events whose `level` is `error` (or the configured `level`)."""

import weir_sdk


class KeepErrors(weir_sdk.Filter):
    def __init__(self, config):
        unknown = set(config) - {"level"}
        if unknown:
            raise ValueError(f"unknown setting `{unknown.pop()}` (known: level)")
        self.level = config.get("level", "error")

    def keep(self, event):
        return event.get("level") == self.level


WitWorld = weir_sdk.export_filter(KeepErrors)
