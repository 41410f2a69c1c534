"""Tasks: data, reference models, metrics and the training loop.

Example::

    import modelpress as mp

    task = mp.tasks.get("mnist-5k")            # splits, metric, loss; task.model() = trained baseline
    mp.tasks.names()                            # ['digits', 'mnist-5k', 'fashion-mnist', 'bbc-news']
    net = mp.tasks.models.build("lenet-5")      # random weights, source attached
    mp.tasks.train.train(net, task.train, task.loss, epochs=2)
"""

from modelpress.tasks import data, metrics, models, train
from modelpress.tasks.builtin import describe, get, names
from modelpress.tasks.task import Metric, Predict, Split, Task

__all__ = ["Metric", "Predict", "Split", "Task", "data", "describe", "get", "metrics", "models", "names", "train"]
