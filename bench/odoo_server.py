# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""``odoo`` as the benchmark runs it: the same command line, minus the longpolling server.

Odoo's prefork server (``--workers``) respawns its gevent (longpolling)
process, ``sys.argv[0] gevent ...``, whenever it exits. Jobs do not need it,
and where gevent cannot start (on the machine these figures come from, its
plugin lookup raises ``DistributionNotFound: zope.interface`` at import) the
respawn loop eats a core and skews every figure. Started through this file,
that process idles until the server stops it.

    python bench/odoo_server.py [odoo server options...]
"""

import signal
import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["gevent"]:
        signal.pause()  # idle until the prefork server's SIGTERM
    else:
        import odoo.cli

        odoo.cli.main()
