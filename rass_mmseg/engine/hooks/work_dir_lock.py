"""An exclusive lock on a work dir, so that two training runs never write checkpoints into the same one."""
import datetime
import errno
import os
import os.path as osp
import socket
from typing import IO, Dict, Optional

from mmengine.logging import print_log

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

__all__ = ['WorkDirLock']

#: The lock file in the work dir; it outlives the lock and holds the last holder's pid, host and start time.
LOCK_FILE_NAME = '.training.lock'

#: errno values of a file system that cannot lock (train unlocked, with a warning).
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}

#: The locks this process holds, by lock file path (see :meth:`WorkDirLock.acquire`).
_held_by_this_process: Dict[str, 'WorkDirLock'] = {}


class WorkDirLock:
    """``flock`` on ``work_dir/.training.lock``: held by one training run at a time.

    The kernel drops a flock when the process that holds it ends, however it ends, so a crashed run leaves no stale
    lock behind. One process trains one run at a time (mmengine's Runner keeps process-wide singletons), so a lock
    this process still holds from an earlier run that raised before releasing it is taken over.

    Args:
        work_dir: The directory to lock (it must exist).
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_FILE_NAME)
        self._file: Optional[IO[str]] = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._file is not None

    def acquire(self) -> Optional[str]:
        """Take the lock without waiting.

        Returns:
            None when taken (or when the file system cannot lock: a warning is logged), else a one-line refusal naming
            the work dir and the holder.
        """
        if fcntl is None:
            print_log(f'cannot lock work dir {self.work_dir} on this platform (no fcntl); a second training run '
                      'started in it would not be refused', logger='current', level='WARNING')
            return None
        earlier = _held_by_this_process.get(osp.realpath(self.path))
        if earlier is not None:
            earlier.release()
        file = open(self.path, 'a+')  # never truncates: a refused run must not erase the holder's details
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            file.seek(0)
            holder = file.read().strip() or 'holder unknown'
            file.close()
            if error.errno in _NO_LOCKING:
                print_log(f'cannot lock work dir {self.work_dir} ({error.strerror}); a second training run started '
                          'in it would not be refused', logger='current', level='WARNING')
                return None
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            return (f'work dir {self.work_dir} is in use by another training run ({holder}; lock file '
                    f'{self.path}); wait for it to finish or choose another --work-dir')
        started = datetime.datetime.now().isoformat(timespec='seconds')
        file.seek(0)
        file.truncate()
        file.write(f'pid {os.getpid()} on host {socket.gethostname()}, started {started}\n')
        file.flush()
        self._file = file
        _held_by_this_process[osp.realpath(self.path)] = self
        return None

    def release(self) -> None:
        """Drop the lock (and empty the lock file); nothing when not held."""
        file, self._file = self._file, None
        if file is None:
            return
        if _held_by_this_process.get(osp.realpath(self.path)) is self:
            del _held_by_this_process[osp.realpath(self.path)]
        try:
            file.truncate(0)
        finally:
            file.close()  # closing the only descriptor of the open file drops the flock
