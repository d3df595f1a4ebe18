"""``vocalsep web``: a page for people to separate a song, compare the stems and download them.

``jobs`` is the queue that separates one song at a time with a ``Separator``, ``upload``
receives songs into the work dir, ``app`` is the page and its JSON API (Starlette), and
``server`` runs it all with uvicorn.
"""
