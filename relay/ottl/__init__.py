"""OTTL, the OpenTelemetry Transformation Language, below the components that run it.

``parse`` turns text into trees (syntax only); ``contexts`` says which paths
each context has and walks a request through them; ``paths`` resolves a path
in a context; ``compile`` turns trees into closures over an ``Item``, with
the functions of ``editors`` and ``converters``; ``regex`` translates the
collector's pattern languages (RE2, Go replacement templates, globs);
``gofmt`` is Go's Sprintf for ``Format``, ``semconv`` the span-name rules
of ``set_semconv_span_name``. The transform and filter processors both
build on it; ``compiled_config`` is what their configs share (compiling while
validating, once).
"""
