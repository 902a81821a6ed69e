"""A lease change gives the annex's running instances a token valid to the new lease end.

A minted token expires with the lease it was made for (plus a grace, see annexd.instance_config.idtoken), so
moving the lease end must move the token's too, before the old one expires.  The instances
already re-read their config object every minute (``condor_annex_ec2 -refresh-lease``) for the
lease end its metadata carries; when it moved, they re-install the object.  So a lease change
rewrites the object once, token and metadata together in one PutObject: an instance never
sees the new lease end without the new token.  The jti stays the annex's, so a revocation by
jti on the central manager covers every token the annex ever gets.

Annexes with the user's own token or the pool password have nothing to renew: only the
metadata moves (a CopyObject in place), as before.
"""
from __future__ import annotations

from typing import Callable

from annexd.instance_config import tarball
from annexd.aws import AnnexAws
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.commands.context import OperationError

#: Mints the annex's token for a lease end (the daemon's signing key, read at call time).
Minter = Callable[[AnnexPlan, int], str]


def config_writer(aws: AnnexAws, plan: AnnexPlan, lease_end: int,
                  mint: Minter) -> Callable[[], None]:
    """Everything that can fail before anything changes -- reading the object, minting the
    token -- done now; returns the one write that moves the lease end the instances read
    (with a minted token, renewed in the same write).  A lease change calls it only once the
    rule and target hold the new end: a change that fails leaves no object without a lease.
    A token that cannot be minted stops the lease change before anything changed."""
    if plan.pool_auth != "minted":
        return lambda: aws.set_config_lease_end(plan.bucket, plan.config_key, lease_end)
    try:
        token = mint(plan, lease_end)
    except InvalidRequest as error:
        raise OperationError("invalid-request", f"{error}; nothing was changed") from None
    payload = tarball.with_token(aws.get_config(plan.bucket, plan.config_key), plan, token)
    return lambda: aws.put_config(plan.bucket, plan.config_key, payload, plan.annex_id,
                                  lease_end)
