"""``condor_annex -setup`` / ``-check-setup``: a region's setup stacks, with the caller's keys."""
from __future__ import annotations

import logging
from typing import Any, Callable

from annexd.rpc import protocol
from annexd.aws import stacks
from annexd.aws import AwsError
from annexd.config.knobs import KnobError
from annexd.commands import checksetup
from annexd.commands.context import Context

log = logging.getLogger("annexd.rpc.service")


def setup(ctx: Context, request: dict[str, Any], progress: Callable[[str], None],
          check_only: bool) -> dict[str, Any]:
    """Create or update the region's setup stacks, or check what a create there would use."""
    settings = ctx.settings
    try:
        region = settings.for_region(request.get("region")).region
    except KnobError as error:
        return protocol.error_reply("invalid-request", str(error))
    aws = ctx.aws(region, request.get("credentials"))
    if check_only:
        use = checksetup.uses(request, settings.for_region(region), settings.pool)
        return protocol.ok_reply({"region": region, "checks": checksetup.check(aws, use)})
    aws.setup_role_arn = settings.setup_role_arn
    work = stacks.Setup(aws, progress, poll_seconds=settings.setup_poll_seconds)
    try:
        outputs = work.run()
    except (stacks.SetupError, AwsError) as error:
        return protocol.error_reply("aws", f"setup of {region} failed: {error}",
                                    aws_code=getattr(error, "code", None))
    log.info("setup of %s complete: %s", region, outputs)
    return protocol.ok_reply({"region": region, "outputs": outputs})
