"""The plugin machinery: hook specifications, the plugin manager, the registries, and the fusion-
head contract."""
