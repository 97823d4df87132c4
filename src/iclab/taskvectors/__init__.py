"""Task vectors (Hendel, Geva, Globerson 2023): ICL compresses demonstrations into one hidden state.

    lm = iclab.models.load_model("smollm2-135m")
    template = get_template("paper")                       # example:{x}->{y}, joined by newlines
    task = prepare_task(get_task("algorithmic_to_upper"), lm.tokenizer, template)
    res = evaluate_task(TaskVectorRunner(lm), task, template, seed=0)
    res.baseline, res.icl, res.task_vector, res.best_layer
"""

from ._episodes import Episode, sample_episodes, split_queries
from ._evaluate import TaskResult, evaluate_task, extract_thetas
from ._function_vectors import HeadEffects, head_effects
from ._heads import function_vector, indirect_effects, mean_head_activations, top_heads
from ._method import TaskVectorRunner
from ._prompts import TEMPLATES, PreparedTask, Template, answer_lengths, get_template, prepare_task
from ._scoring import is_correct
from ._tasks import PAPER_TASKS, SUBSTITUTES, Task, get_task, load_task_file, resolve_tasks, task_names

__all__ = [
    "Episode", "HeadEffects", "PAPER_TASKS", "PreparedTask", "SUBSTITUTES", "TEMPLATES", "Task", "TaskResult",
    "TaskVectorRunner", "Template", "answer_lengths", "evaluate_task", "extract_thetas", "function_vector",
    "get_task", "get_template", "head_effects", "indirect_effects", "is_correct", "load_task_file",
    "mean_head_activations", "prepare_task", "resolve_tasks", "sample_episodes", "split_queries", "task_names",
    "top_heads",
]  # fmt: skip
