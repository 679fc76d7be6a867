"""Development tools shared by the test suite, ``make demo`` and ``make bench``.

Everything here drives real processes: the CNCF distribution registry (``docker-registry``), a small
JWT token server, network namespaces, and synthetic images pushed with plain httpx. Nothing in this
package imports :mod:`arcgap`, so it can serve as an independent oracle for it.

Modules:

- :mod:`devtools.pki` -- test CA, server certificates, ES256 token-signing key.
- :mod:`devtools.procs` -- free ports, polling with a deadline, managed subprocesses.
- :mod:`devtools.netns` -- network namespaces (create, run inside, delete).
- :mod:`devtools.tokens` / :mod:`devtools.tokenserver` -- the distribution token spec, served over HTTP(S).
- :mod:`devtools.rawclient` -- a minimal registry client (Basic and Bearer challenges) built on httpx.
- :mod:`devtools.registries` -- start/stop a distribution registry (TLS, htpasswd, token, netns).
- :mod:`devtools.skopeo` -- skopeo as an independent oracle (``inspect --raw``, ``copy``).
- :mod:`devtools.layers` / :mod:`devtools.images` / :mod:`devtools.synth` -- synthetic layers and images.
"""
