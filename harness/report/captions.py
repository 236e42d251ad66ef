"""The captions of the report's figures: what each shows and how to read it."""

CAPTIONS = {
    "learning_curves": "Learning curves. Training loss, validation loss and validation accuracy against step, one "
    "row per task; lines are means across seeds, bands their 95% interval. Curves that separate early and stay "
    "apart are a real difference; bands that overlap throughout are not.",
    "units": "Dead and saturated units per layer over training (step 0 = initialisation). A dead unit has f'(z) = 0 "
    "on every probe sample, a saturated one |f'(z)| < 0.5% of max|f'|; both no longer learn. A line that climbs "
    "means units are being lost as training goes on; activations that lose none lie on top of each other at 0. "
    "The y axis is fitted to the mean lines (a few percent fill the panel); a band that reaches past it is cut at "
    "its edge, and no band goes below 0 or above 1.",
    "activations": "Mean and standard deviation of each activation layer's output over training (Glorot and "
    "Bengio, 2010). A mean far from 0 shifts the next layer's input; a standard deviation that shrinks layer by "
    "layer towards 0 means the signal is dying out with depth, one that grows means it is exploding.",
    "gradients": "Weight-gradient norm per layer (input layer on the left, head on the right) at initialisation, "
    "averaged over training, and at the end, on a log scale. Lines that fall steeply towards the input layers are "
    "vanishing gradients; lines that rise are exploding ones. Flat is healthy.",
    "gradient_heatmap": "Gradient norm per layer (rows, input at the top) and training step (columns), one panel per "
    "activation, each step divided by the geometric mean over its layers: the colour shows how a layer's gradient "
    "compares with the others' at the same step (0 = average; -1 = ten times smaller), so the overall decay over "
    "training drops out and layers that learn less than the rest stand out as blue rows.",
    "through_time": "Recurrent network: norm of the gradient of the loss with respect to the hidden state at each "
    "time step t, at initialisation and at the end. A curve that drops towards early time steps means the "
    "gradient vanishes through time, so the network cannot learn long-range dependencies.",
    "cost": "Cost relative to the baseline, from the cost probe (each setting timed alone, never the runs' own "
    "timing): time per training step and memory per step, one row of panels per task and machine. Dots are the "
    "geometric mean of the per-round ratios, bars their 95% interval; 1 = as the baseline, right of it = costlier. "
    "An activation measured by another probe than the baseline's has no ratio.",
    "accuracy_vs_cost": "Accuracy against cost: test accuracy at best validation (mean over seeds at each "
    "activation's chosen setting, 95% interval) against time per training step from the cost probe (median over "
    "rounds, 95% interval), one panel per task and machine. Ringed and joined: the Pareto front, the activations "
    "that no other beats on both (faster and at least as accurate, or more accurate and at least as fast).",
    "accuracy_by_setting": "Accuracy at each setting (learning rate, init, ...) per activation, with 95% intervals; "
    "the setting chosen on validation accuracy is ringed. An activation that only does well at one setting is "
    "fragile; compare activations at their own best setting, not at one shared value.",
    "overview": "The five questions at a glance: (1) test accuracy per seed (bar: mean); (2) validation accuracy "
    "per seed against step, where a dip below a curve's best is a drawdown; (3) per layer, units dead at "
    "initialisation (solid) and units lost in training (hatched: alive at init, dead at the end); (4) weight-"
    "gradient norm by layer, input on the left, at initialisation (faint) and averaged over training (bold), each "
    "activation in its own line style; "
    "(5) time per training step from the cost probe (median over rounds, 95% interval), per machine.",
    "q_accuracy": "Test accuracy at best validation, one dot per seed (hover: activation, seed, setting, value); "
    "click a legend entry to hide an activation.",
    "q_stability": "Validation accuracy per seed against step; hover names the activation and seed behind a dip.",
    "q_dead units": "Per layer, the fraction of units dead at initialisation (left) and lost in training (right, "
    "alive at init and dead at the end), one dot per seed.",
    "q_gradient flow": "Weight-gradient norm per layer (input on the left, head on the right), one line per seed, "
    "log scale; the gradient-flow ratio is the head's value over the first layer's.",
    "q_cost": "Time per training step from the cost probe, median over rounds with its 95% interval, one point per "
    "machine; hover shows the ratio to the baseline.",
    "critical_difference": "Critical-difference diagram (Demšar, 2006): average rank across tasks, 1 = best. A thick "
    "bar joins activations whose ranks differ by less than the critical difference, i.e. not significantly "
    "different by the Nemenyi test at 5%.",
    "gallery": "Each activation f(x) (solid) and its derivative f'(x) (dashed) on x in [-5, 5] (ReLU6 to 10), as "
    "the reference article draws them.",
    "learnt_shapes": "The learnable activations' learnt shapes, per task and layer, at each one's chosen setting: f "
    "(solid) and f' (dashed) at initialisation (black) and after training (colour, one line per run), rebuilt "
    "from the parameters each run recorded. An activation with parameters per unit (spline) is drawn as the "
    "pointwise median over the layer's units, with the 10th to 90th percentile over units as a band (after "
    "training: the first run's).",
}
