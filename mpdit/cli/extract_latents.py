"""`mpdit extract-latents`: an ImageFolder encoded into latent shards (diffusers VAE)."""
import json

from mpdit.cli.parsing import add_command
from mpdit.options import config_from_args


def add(commands) -> None:
    from mpdit.data.latents import ExtractSettings

    add_command(commands, "extract-latents", run, ExtractSettings,
                help="encode an ImageFolder into latent shards (diffusers VAE)")


def run(args) -> int:
    from mpdit.data.latents import ExtractSettings, extract_latents
    from mpdit.world import joined_world

    with joined_world() as world:
        result = extract_latents(config_from_args(ExtractSettings, args), rank=world.rank, world=world.size,
                                 device=world.device)
    print(json.dumps({k: v for k, v in result.items() if k != "classes"}))
    return 0
