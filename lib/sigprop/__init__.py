"""sigprop: the library behind the book "Signal Propagation".

One module per topic, each taught in a chapter:

- ``runtime``: device choice, seeding, the experiment-size knob (every chapter's first cell).
- ``data``: the bundled digits and small synthetic sets; nothing is downloaded.
- ``activations``: the one table of nonlinearities (module, function, derivative, gain) and the
  mean-field per-layer factor.
- ``models``: the MLP and small CNN the chapters probe, with named layers.
- ``train``: the shared training loop and its ``History``; divergence stops a run cleanly.
- ``diagnostics``: per-layer probes of activations, gradients and update:data ratios (chapters 0-1).
- ``plots``: the book's standard figures; ``widgets``: explorable figures, live and static.
- ``gradients``: clipping, Jacobian products, gradients through depth and time (chapter 1).
- ``init``: initialization schemes written from their definitions (chapter 2).
- ``normalization``: batch, layer, instance, group and switchable normalization, recalibration
  (chapter 3); ``sweeps``: the batch-size sweep of chapters 3 and 4.
- ``weight_norm``: weight normalization, compatible with PyTorch's parametrization (chapter 4).
- ``auxiliary``: multi-head models, loss weightings, hedge backpropagation (chapters 5-6);
  ``scaling``: target scalers with scikit-learn's semantics (chapter 6).
"""

__version__ = "0.1.0"
