"""One module per path a request can take through the daemon.

``create``    a new annex (and a repeat of a parked one's command, which hands over to resume);
``resume``    resuming a parked request, and recovery at start-up;
``off``       ending an annex now;
``lease``     changing an annex's lease end;
``backstop``  the daemon's own lease enforcement;
``status``    what the caller's annexes hold now, and the plain list;
``setup``     a region's setup stacks.

Each takes a :class:`~annexd.commands.context.Context` (what one request may use: the settings it
started with, the journal, the daemon's identity) and a :class:`~annexd.commands.context.Caller`
(who asks, as the kernel said); ``annexd.rpc.service`` decides who may ask what and dispatches.
"""
