"""Policy gates: every pull-time and tag-time decision as one chain of small gates, one module each,
evaluated in one place (chain.GateChain) for `/v2`, the admission endpoint, promotion and the UI.

A gate looks at one Subject (an image in a repository, and at tag time the tag it is to get) and
either lets it pass or returns a Refusal that names the gate and what would satisfy it.
"""
