"""Type stubs of the extension module (built from python/src/lib.rs)."""

from typing import Callable, List, Optional, Tuple, Union
import os

__version__: str

def run(
    args: List[Union[str, os.PathLike]],
    progress: Optional[Callable[[str, int, Optional[int]], object]] = None,
) -> Tuple[int, str]: ...
def cli_main(argv: List[str]) -> int: ...
