"""The clipclap hook specifications: one line of documentation each, nothing else."""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("clipclap")
hookimpl = HookimplMarker("clipclap")


@hookspec
def register_dataset_kinds(register):
    """Register dataset formats (adapters): register(AdapterClass) -- AdapterClass.kind is the `kind`
    used in datasets.toml"""


@hookspec
def register_datasets(register):
    """Deprecated name of register_dataset_kinds (works, with a warning, until clipclap 0.4)"""


@hookspec
def register_dataset_entries(register):
    """Register whole datasets without editing datasets.toml: register(name, table) -- table holds the
    keys of a [datasets.NAME] table"""


@hookspec
def register_encoders(register):
    "Register feature extractors: register(encoder, aliases=()) -- encoder.encoder_id, .modality, .dim identify it"


@hookspec
def register_heads(register):
    """Register fusion heads: register(HeadClass, aliases=()) -- HeadClass.head_id names it,
    HeadClass.Params configures it"""


@hookspec
def register_commands(app):
    "Add commands or sub-apps to the clipclap Typer app, e.g. 'clipclap mycommand ...'"
