"""The errors that mean bad input rather than a bug: the CLI prints them as one line, no traceback."""

from multvae.config import ConfigError
from multvae.data import DataError
from multvae.download import DownloadError
from multvae.evaluation import EvaluationError
from multvae.ratings import RatingsError
from multvae.recommend import RecommendError
from multvae.split import SplitError
from multvae.training import TrainingError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, DataError, DownloadError, EvaluationError, RatingsError, RecommendError, SplitError,
    TrainingError,
)
