"""Task vectors (Hendel, Geva, Globerson 2023): ICL compresses demonstrations into one hidden state.

    lm = iclab.models.load_model("smollm2-135m")
    template = get_template("paper")                       # example:{x}->{y}, joined by newlines
    task = prepare_task(get_task("algorithmic_to_upper"), lm.tokenizer, template)
    res = evaluate_task(TaskVectorRunner(lm), task, template, seed=0)
    res.baseline, res.icl, res.task_vector, res.best_layer
"""

from .episodes import Episode, sample_episodes, split_queries
from .evaluate import TaskResult, evaluate_task, extract_thetas
from .method import TaskVectorRunner
from .prompts import TEMPLATES, PreparedTask, Template, get_template, prepare_task
from .scoring import is_correct
from .tasks import PAPER_TASKS, SUBSTITUTES, Task, get_task, load_task_file, resolve_tasks, task_names

__all__ = [
    "PAPER_TASKS", "SUBSTITUTES", "TEMPLATES", "Episode", "PreparedTask", "Task", "TaskResult", "TaskVectorRunner",
    "Template", "evaluate_task", "extract_thetas", "get_task", "get_template", "is_correct", "load_task_file",
    "prepare_task", "resolve_tasks", "sample_episodes", "split_queries", "task_names",
]  # fmt: skip
