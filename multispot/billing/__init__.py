"""Usage → CostReport: what each attempt was billed, the on-demand counterfactual, and the savings.

Per attempt (one :class:`CostLine`): the billable time as the provider reports it, the price that
applies to it and where that price came from, and the cost. Per job (:class:`CostReport`):

- **actual**: the sum of the attempts' costs (estimated), or the provider's billing API figure
  when ``measured`` was asked for and the source is configured (measured);
- **on-demand counterfactual**: the same useful work on on-demand capacity of the same instance —
  each attempt's compute time minus the work lost to its preemption, at the on-demand price;
- **savings**: counterfactual − actual, in money and as a fraction of the counterfactual;
- **lost work**: the share of each preempted attempt's cost spent after its last checkpoint;
- **checkpointing**: the blocking save time recorded in the checkpoints' manifests
  (``write_seconds``) at the attempt's price.

Prices: the catalog's offer for the instance (``load_catalog().lookup``), else the placement's
price recorded at submission (for the local provider: ``provider_options.local.price_per_hour``).
Which rate applies to billable time is the provider's own rule, ``Provider.billing``
(:class:`multispot.provider.BillingRule`): SageMaker's says managed spot bills
``BillableTimeInSeconds`` (already reduced by the spot discount) at the on-demand rate. A provider
that is no longer installed is priced with spot time at the spot rate, and the report says so.

Modules, by concern: ``model`` (the report types), ``pricing`` (one attempt's prices),
``assemble`` (attempts → report, measured figures), ``savings_report`` (across jobs), ``render``
(text and HTML) and ``plots`` (matplotlib).
"""

from multispot.billing.assemble import checkpoint_save_seconds, cost_report, measure, report_for_job
from multispot.billing.model import BillingSource, CostLine, CostReport, MeasuredCost
from multispot.billing.plots import PLOT_HINT, MissingPlotExtra
from multispot.billing.pricing import AttemptPrices, OnDemandPrices, attempt_prices, billing_rule
from multispot.billing.savings_report import SavingsGroup, SavingsReport, parse_since, savings

__all__ = [
    "PLOT_HINT",
    "AttemptPrices",
    "BillingSource",
    "CostLine",
    "CostReport",
    "MeasuredCost",
    "MissingPlotExtra",
    "OnDemandPrices",
    "SavingsGroup",
    "SavingsReport",
    "attempt_prices",
    "billing_rule",
    "checkpoint_save_seconds",
    "cost_report",
    "measure",
    "parse_since",
    "report_for_job",
    "savings",
]
