"""The studio: a local web app for style transfer and neural doodles (issue 9).

``python -m studio`` serves one page (plain HTML/CSS/JS from ``studio/static``) over Starlette + uvicorn.
The engine runs in one worker thread (:mod:`studio.jobs`); progress reaches every open page by server-sent
events. Modules: ``schema`` (config dataclasses -> form fields), ``files`` (folders, confinement, uploads),
``jobs`` (queue, worker, live state), ``history`` (run folders, zip, compare), ``automaps`` (the doodle
tab's "make map": automatic semantic maps), ``guard`` (Host, origin and token checks, security headers),
``app`` (the routes), ``__main__`` (the command line).
"""
