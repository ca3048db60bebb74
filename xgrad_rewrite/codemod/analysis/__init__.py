"""The codemod's analysis: which steps, which optimizer, where the calls go.

Everything here reads the standard library's :mod:`ast` and nothing else: no module of this
package imports libcst (a test checks it), so ``--check`` and the planning of every edit cost
one ``ast.parse``. What it decides is plain data (:class:`.find.Plan`, :class:`.calls.Insertion`)
that :mod:`xgrad_rewrite.codemod.edit` turns into text.
"""
