from cnidoctor.cli import entrypoint

entrypoint()
