"""CEL device selectors, offline: parse, check against the `device` variable, and evaluate.

Modules: `syntax` (parse, cel.bind, the Node tree), `guards` (guarded attribute reads), `static`
(the checks and `check`), `budget` (cost, size and literal bounds), `values` (Quantity, Semver
and the Kubernetes functions), `evaluation` (the `device` value and running a selector).

Library: `cel-python` (`import celpy`, Cloud Custodian, Apache-2.0, pure Python on `lark`).
It was chosen over `common-expression-language` (Rust bindings, faster) because we need the
syntax tree: the static checks below (which variables and functions an expression uses, which
attribute reads are guarded) walk it, and parse errors carry a line and column. The Rust
bindings expose only the names an expression references, so none of that is possible there.
celpy calls `x.f(y)` as the Python function `f(x, y)`, which is how the Kubernetes extension
functions (quantity, semver, ext strings) are added here without touching the library.

What the API server checks that we approximate:
- Type checking: CEL-go type-checks against `device`'s declared type. We check the shape
  (`device.driver|attributes|capacity|allowMultipleAllocations`), that every free variable is
  `device`, that every function exists in the Kubernetes environment, a few type errors users
  make (`<`/`>` on Quantity or Semver, which need `compareTo`), literal `quantity()`/`semver()`
  arguments, and that the result is a bool where that can be seen without types.
- The cost limit: estimated on the largest device the API accepts, with bounds on nesting and
  on the size cel.bind expansion may reach (`budget`); beyond them the expression is refused as
  too expensive. `kubectl create --dry-run=server` stays the authority on the exact cost.
- Literals cel-go refuses (integers outside int64, lone surrogate escapes) are errors.
- `cel.bind(v, init, body)` is not in celpy; it is expanded by substituting `init` for `v`
  in `body` before checking and evaluation (same result, only the evaluation cost differs).

Kubernetes semantics kept in evaluation: an attribute published without a domain is filed under
the driver name; `device.attributes["unknown.domain"]` is an empty map; reading a missing
attribute is an error (which stops allocation in the scheduler), not `false`.
"""

from __future__ import annotations

from kubectl_dra.celcheck.errors import CelError, CelTooExpensive, Problem, Severity
from kubectl_dra.celcheck.evaluation import (
    CelEvaluationError,
    CelEvaluationTooExpensive,
    device_value,
)
from kubectl_dra.celcheck.node import Node
from kubectl_dra.celcheck.static import KNOWN_FUNCTIONS, Checked, check, evaluate
from kubectl_dra.celcheck.syntax import parse, to_node
from kubectl_dra.celcheck.values import FUNCTIONS, Quantity, Semver

__all__ = [
    "FUNCTIONS",
    "KNOWN_FUNCTIONS",
    "CelError",
    "CelEvaluationError",
    "CelEvaluationTooExpensive",
    "CelTooExpensive",
    "Checked",
    "Node",
    "Problem",
    "Quantity",
    "Semver",
    "Severity",
    "check",
    "device_value",
    "evaluate",
    "parse",
    "to_node",
]
