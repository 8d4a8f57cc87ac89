"""Component schemas of the backup routes."""

from .types import BOOL, INT, NUM, STR, arr, obj, opt, ref

_TOTALS = {'files': INT, 'bytes': INT, 'new_bytes': INT, 'linked': INT, 'listed': INT, 'listed_bytes': INT}

SCHEMAS = {
    'BackupRun': obj({'ok': BOOL, 'name': STR, 'dir': STR, 'started_at': NUM, 'finished_at': NUM, 'seconds': NUM,
                      'error': opt(STR), 'deleted': arr(STR),
                      'skipped': arr(obj({'path': STR, 'error': STR})), **_TOTALS}),
    'BackupSnapshot': obj({'name': STR, 'time': NUM, 'finished_at': NUM, 'include_media': BOOL, 'skipped': INT,
                           **_TOTALS}),
    'Backups': obj({'dir': STR, 'inside_data_root': BOOL, 'interval_h': NUM, 'keep_daily': INT, 'keep_weekly': INT,
                    'include_media': BOOL, 'running': opt(obj({'started_at': NUM})),
                    'last': opt(ref('BackupRun')), 'last_ok': opt(ref('BackupRun')), 'next_at': opt(NUM),
                    'snapshots': arr(ref('BackupSnapshot'))}),
}
