"""Imported first by each Beam worker process (``--beam_plugin``, see ``vocalsep.logs``), so a
worker's terminal output is as quiet as the command's own process."""

from vocalsep import logs

logs.quiet_process()
