"""The notebook API behind :mod:`metaniche.tl`, :mod:`metaniche.pl` and :func:`metaniche.read_run`.

A thin facade: the input adapter (:mod:`metaniche._api._adapter`) turns an AnnData, a contract
DataFrame or a SpatialData table into the standardised cell table of each sample and builds
the same :class:`~metaniche.context.SampleContext` as the pipeline
(:func:`metaniche.sample.build_context`); the tools call the pipeline's stages and kernels with
the configuration's parameters, so a notebook and ``metaniche run`` give identical numbers.
"""
