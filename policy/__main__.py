"""Entry point of the CrossGuard policy pack: `pulumi preview --policy-pack policy`.

Pulumi runs this folder with its first sys.path entry set to it. Constructing the PolicyPack starts the
analyzer's gRPC server and blocks, so nothing imports this file: the tests exercise rules.py and pack.py.
"""

import pack
from pulumi_policy import PolicyPack

PolicyPack(name=pack.NAME, enforcement_level=pack.ENFORCEMENT, policies=pack.policies())
