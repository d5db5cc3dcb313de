"""`mpdit extract-latents`: an ImageFolder encoded into latent shards (diffusers VAE)."""
import json

from mpdit.options import add_config_arguments, config_from_args


def add(commands) -> None:
    from mpdit.data.latents import ExtractSettings

    parser = commands.add_parser("extract-latents", help="encode an ImageFolder into latent shards (diffusers VAE)")
    add_config_arguments(parser, ExtractSettings)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from mpdit.data.latents import ExtractSettings, extract_latents
    from mpdit.world import joined_world

    with joined_world() as world:
        result = extract_latents(config_from_args(ExtractSettings, args), rank=world.rank, world=world.size,
                                 device=world.device)
    print(json.dumps({k: v for k, v in result.items() if k != "classes"}))
    return 0
