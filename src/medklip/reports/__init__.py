"""Report filter: radiology reports -> {entity, position, exist} triplets, and training targets."""
from medklip.reports.filter import ReportFilter, Triplet
from medklip.reports.vocabulary import Vocabulary

__all__ = ["ReportFilter", "Triplet", "Vocabulary"]
