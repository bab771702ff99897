"""What redaction keeps: well-known names that identify software, not people.

A trace is shareable only if it still says *what* happened: which scanner held which kind
of file under which well-known folder. These lists are that vocabulary. Everything here is
compared lower-cased (``str.lower``, as the analysis compares paths).

* :data:`PROCESSES`: images of well-known software (Windows binaries, scanners, indexers,
  developer tools). Images found under ``C:\\Windows`` or ``Program Files`` in the trace
  itself are added at run time.
* :data:`DIRECTORIES`: folder and file names that software, not users, chose.
* :data:`ACCOUNTS` and :data:`AUTHORITIES`: built-in Windows accounts and the domains of
  built-in principals (``NT AUTHORITY\\SYSTEM``), which identify no one.
* :data:`PROTECTED`: words of Procmon's own grammar (Detail keys and values, result and
  category names) that must never be replaced inside free text, even when a user or
  computer happens to have that name.

:func:`is_vocab` is the test the rewriters and the leak check share: a secret that is
also a vocabulary word is pseudonymised only where the structure says what it is
(``C:\\Users\\<name>``, ``DOMAIN\\user``), never replaced inside other text.
"""

from __future__ import annotations

import re

__all__ = [
    "ACCOUNTS",
    "AUTHORITIES",
    "COMPANIES",
    "DIRECTORIES",
    "PREFIXES",
    "PROCESSES",
    "PROTECTED",
    "SAFE_ENV",
    "SYSTEM_ENV_ROOTS",
    "is_number_or_version",
    "is_vocab",
    "split_ext",
]


def _words(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text``."""
    return frozenset(text.split())


def _lines(text: str) -> frozenset[str]:
    """The non-blank lines of ``text``, stripped (names with spaces)."""
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


PROCESSES: frozenset[str] = _words(
    """
    7z 7zfm <unknown> applicationframehost audiodg avastsvc avgsvc avp backgroundtaskhost
    bash bdservicehost bitsadmin browser_broker calc cargo cb certutil chrome cl clang
    clang++ clippy-driver cmake cmd code code-insiders compattelrunner conda
    conhost csc csfalconcontainer csfalconservice csrss ctfmon curl cylancesvc dashost
    devenv dllhost dotnet dropbox dwm ekrn excel explorer filecoauth firefox fontdrvhost g++
    gcc git git-lfs git-remote-https go googledrivefs gpg gradle httpd iexplore
    iisexpress ipconfig java javaw ld lib link lsaiso lsass lsm make mamba mcshield memory
    mfemms mfevtps microsoftedge microsoftedgecp microsoftedgesh mingw32-make ml64 mmc
    mousocoreworker mpcmdrun mpdefendercoreservice ms-teams msbuild msedge msedgewebview2
    msiexec msmpeng msmpengcp mspaint mssense musnotification mvn mypy net net1 netsh nginx
    ninja nissrv node notepad npm npx onedrive onedrivesetup onenote outlook perfmon pip
    pip3 pnpm powerpnt powershell procexp procexp64 procmon procmon64 pwsh py pytest
    python python3 pythonw reg regedit registry regsvr32 repmgr resmon robocopy ruff
    rundll32 runtimebroker rust-analyzer rustc rustdoc rustup rustup-init savservice sc
    schtasks searchapp searchfilterhost searchhost searchindexer searchprotocolhost searchui
    securityhealthservice securityhealthsystray sensecncproxy sentinelagent
    servicehub.host.clr.x86 servicehub.host.netfx.x86 servicehub.identityhost
    servicehub.roslyncodeanalysisservice services sgrmbroker sh shellexperiencehost sihost
    smartscreen smss sophoshealth spoolsv sqlservr sqlwriter ssh startmenuexperiencehost
    svchost system systemsettings tar taskhostw tasklist taskmgr teams testhost
    textinputhost tiworker trustedinstaller usoclient uv uvx vbcscompiler vboxservice
    vboxtray vds vmacthlp vmtoolsd vssvc vstest.console w3wp wbengine wevtutil wget where
    whoami wininit winlogon winrar winword wmiprvse wordpad wsl wslhost wslservice wuauclt
    wudfhost xcopy yarn
    """
) | _lines(
    """
    memory compression
    secure system
    system idle process
    """
)
"""Well-known images, lower-case and without ``.exe``."""

DIRECTORIES: frozenset[str] = _words(
    """
    $extend $j $logfile $max $mft $recycle.bin $sds $secure $usnjrnl .cache .cargo .conda
    .dotnet .env .git .github .gradle .idea .local .m2 .mypy_cache .npm .nuget .pnpm-store
    .pytest_cache .ruff_cache .rustup .tox .venv .virtualenvs .vs .vscode .yarn ??
    __pycache__ ac adobe amd amd64 anaconda3 appdata apple application applications
    archive-v0 arm64 assembly automaticdestinations bin boot box build builds-v0 cache
    caches cargo catroot catroot2 checkouts chocolatey chrome classes clsid code common7
    conda config contacts control cookies crashdumps crates.io-index currentcontrolset
    customdestinations data db debug default defender dell desktop device dist dist-packages
    documents dotnet downloads drivers driverstore dropbox edge efi env envs etc explorer
    extensions favorites filerepository firefox fonts framework framework64 gather git
    globalization globalroot go google gradle harddiskvolume1 harddiskvolume2
    harddiskvolume3 harddiskvolume4 harddiskvolume5 harddiskvolume6 history host hp ide
    immersivecontrolpanel include index inetcache inetcookies inf installer intel interface
    java jetbrains lenovo lib lib64 links local localcache locallow localstate logs machine
    mailslot microsoft microsoft.net miniconda3 mod modules mozilla msbuild msvc mup music
    namedpipe nethood node_modules npm npm-cache nuget nvidia obj onedrive openssh oracle
    out output packages perflogs pictures pip pipe pipx pkg platform pnpm prefetch printhood
    profiles programdata programs public python quarantine realtek recent recovery registry
    release reportarchive reportqueue repository roaming roamingstate rustup sbin scans
    scoop scripts sdk search searches sendto services servicing settings share shared
    shellexperiences site-packages software softwaredistribution sorting source src startup
    state sysnative system system32 systemapps systemprofile systemresources systemroot
    syswow64 target temp templates tempstate tmp toolchains tools typelib user users uv vc
    venv videos virtualbox virtualenvs vmware vs wbem webcache wer wheels win32 win64
    windows windowsapps windowspowershell winget winnt winsxs x64 x86 yarn
    """
) | _lines(
    """
    3d objects
    all users
    application data
    code - insiders
    common files
    default user
    definition updates
    documents and settings
    internet explorer
    local settings
    microsoft visual studio
    my documents
    nvidia corporation
    oracle virtualbox
    program files
    program files (arm)
    program files (x86)
    reference assemblies
    saved games
    start menu
    system volume information
    temporary internet files
    user data
    visual studio
    vmware tools
    windows defender
    windows defender advanced threat protection
    windows kits
    windows mail
    windows media player
    windows nt
    windows photo viewer
    windows portable devices
    windows search
    windows security
    windows sidebar
    """
)
"""Folder names software chose (lower-case)."""

ACCOUNTS: frozenset[str] = _words(
    """
    admin administrator console default defaultapppool defaultuser0 guest localservice
    networkservice public system trustedinstaller wdagutilityaccount
    """
) | _lines(
    """
    all users
    default user
    local service
    network service
    """
)
"""Built-in accounts (and ``CLIENTNAME=Console``): not secrets."""

AUTHORITIES: frozenset[str] = _words(
    """
    azuread builtin local microsoftaccount nt-autorität
    """
) | _lines(
    """
    application package authority
    autorite nt
    font driver host
    iis apppool
    nt authority
    nt service
    nt virtual machine
    window manager
    """
)
"""Domains of built-in principals: ``NT AUTHORITY\\SYSTEM`` is kept whole."""

COMPANIES: frozenset[str] = _words(
    """
    microsoft node.js
    """
) | _lines(
    """
    adobe inc.
    adobe systems incorporated
    advanced micro devices, inc.
    apple inc.
    astral software inc.
    crowdstrike, inc.
    dropbox, inc.
    git development community
    github, inc.
    google inc.
    google llc
    intel corporation
    jetbrains s.r.o.
    mcafee, llc
    microsoft corporation
    mozilla corporation
    mozilla foundation
    nvidia corporation
    openjs foundation
    oracle corporation
    python software foundation
    realtek semiconductor
    sysinternals - www.sysinternals.com
    the git development community
    the rust project developers
    vmware, inc.
    """
)
"""Publishers in the Company column that identify software, not the user."""

PROTECTED: frozenset[str] = _words(
    """
    accept access alert all allocationsize allowed attributes base basic cached changetime
    command connect connid control create created creationtime current dacl data delete
    deletepending desired directory disconnect disposition doesnotexist endoffile endtime
    environment exclusive execute exists exit fail false file fileattributes filename filter
    flags full generic group handle handletags high image immediately impersonating index
    information integrity kernel key label lastaccesstime lastwritetime length line list low
    maximum medium metadata mss n/a name network non none normal numberoflinks offset open
    opened openif openresult options overwrite overwriteif overwritten owner paging parent
    priority process profiling protected query random rcvwin rcvwinscale read receive
    reconnect registry reparsetag replaceifexists sackopt sacl send seqnum sequential
    sharemode size sndwinscale startime status success supersede superseded synchronize
    synchronous system tcp thread time true tsopt type udp untrusted user value very write
    wsopt
    """
) | _words(
    """
    add address append appcontainer architecture authentication authenticationid aware
    backup baseaddress buffering category child class close commandline company
    companyname complete completion compression connection createtime dac date day depth
    description detail disallow duration encoding event eventlist finishtime for frame
    free imagepath instance is64bit isvirtualized knowledge location module modulelist
    operation opfilter oplock oplocked parentprocessid parentprocessindex path pid point
    processid processindex processlist processname recall relative reparse requiring
    reserve result security sequence session space stack subdirectory through tid
    timestamp traverse tree utf version virtualized xml
    """
)
"""Words of Procmon's own grammar; never replaced inside text. The second list: the words
of the Detail fields the analysis parses (``Open For Backup``, ``Delete On Close``…),
Procmon's column names and the element names of its XML export. Those are written back
untouched, so a secret equal to one of them could never pass the leak check; and
replacing one inside Detail would change what the analysis reads."""

PREFIXES: frozenset[str] = _words(
    """
    arg domain email env example host name secret server user
    """
)
"""The pseudonym prefixes: a secret equal to one of them is not searched for in text."""

SAFE_ENV: frozenset[str] = _words(
    """
    =:: =exitcode =exitcodeascii allusersprofile ci commonprogramfiles
    commonprogramfiles(x86) commonprogramw6432 comspec driverdata errorlevel
    fps_browser_app_profile_string fps_browser_user_profile_string homedrive lang lc_all
    number_of_cores number_of_processors os pathext processor_architecture
    processor_architew6432 processor_identifier processor_level processor_revision
    programdata programfiles programfiles(x86) programw6432 prompt psmodulepath public
    pythonioencoding pythonunbuffered pythonutf8 rust_backtrace sessionname systemdrive
    systemroot term tf_build windir
    """
)
"""Environment variables whose values say nothing about the user (kept, after the
usual path and identity rules)."""

SYSTEM_ENV_ROOTS: frozenset[str] = _words(
    r"""
    %commonprogramfiles% %commonprogramfiles(x86)% %commonprogramw6432% %programfiles%
    %programfiles(x86)% %programw6432% %systemroot% %windir% \systemroot systemroot
    """
)
"""``%SystemRoot%\\…`` style roots that start a system path."""


_VERSION = re.compile(
    r"v?\d+(?:[._]\d+)+(?:[-+._](?:\d+|rc\d*|beta\d*|alpha\d*|dev\d*|post\d*|preview\d*|[ab]\d+))*"
)
_NUMBER = re.compile(r"\d{1,4}")
_PATTERNS = re.compile(
    r"""(?x)
    (?:built-wheels|archive|wheels|sdists|simple|git|interpreter|flat-index|environments
       |builds|python|tools)-v\d+     # uv cache buckets: built-wheels-v3, archive-v0
    | net\d+(?:\.\d+)?(?:-[a-z]+)?   # target frameworks: net8.0, net8.0-windows
    | netstandard\d\.\d | netcoreapp\d\.\d
    | python\d{2,3}(?:-32)?           # Python312
    | py\d{2,3}
    | (?:win|linux|osx)-(?:x64|x86|arm64)
    | harddiskvolume\d+ | harddisk\d+ | partition\d+ | physicaldrive\d+
    | [a-z][a-z0-9.]*_[a-z0-9]{13}     # package family names: Microsoft.Windows.Search_cw5n1h2txyewy
    | (?:en-us|en-gb|de-de|fr-fr|es-es|it-it|ja-jp|zh-cn|zh-tw|ko-kr|ru-ru|pt-br|pt-pt
       |nl-nl|pl-pl|sv-se|tr-tr|cs-cz|da-dk|fi-fi|nb-no|hu-hu|he-il|ar-sa|uk-ua)  # en-US
    | [a-z]:                           # drive letters
    | progra~\d | docume~\d | locals~\d | applic~\d | common~\d | micros~\d | window~\d
    """
)


def is_number_or_version(lower: str) -> bool:
    """Short numbers (``2`` in ``Temp\\2``) and version strings (``4.18.2001.10-0``)."""
    return bool(_NUMBER.fullmatch(lower) or _VERSION.fullmatch(lower))


def is_vocab(lower: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether a lower-cased name is well-known software vocabulary (kept as is).

    ``extra`` holds names learnt from the trace (images found under ``C:\\Windows``).
    """
    if lower in DIRECTORIES or lower in ACCOUNTS or lower in PROTECTED or lower in PREFIXES:
        return True
    if lower in extra:
        return True
    stem = lower[:-4] if lower.endswith((".exe", ".dll", ".sys", ".com")) else lower
    if stem in PROCESSES or stem in extra:
        return True
    return bool(_PATTERNS.fullmatch(lower) or is_number_or_version(lower))


_EXT = re.compile(r"\.[A-Za-z0-9]{1,5}")
_LONG_EXTS = _words(
    """
    .application .appx .blockmap .config .crdownload .csproj .download .ipynb .jsonl .lnk
    .manifest .msix .msixbundle .nupkg .parquet .partial .props .ps1xml .psd1 .psm1 .pyproj
    .resources .sha512 .sln .sqlite .sqlite3 .targets .torrent .vcxproj .webp .woff2
    """
)
_INNER_EXTS = _words(
    """
    .bak .c .cab .cfg .cpp .cs .csv .d .dat .db .dll .doc .docx .exe .gz .h .html .ini .jar
    .js .json .lib .log .map .md .min .msi .mui .nupkg .ocx .old .orig .part .pdb .pdf .ppt
    .pptx .py .pyd .so .sys .tar .tmp .ts .txt .whl .xls .xlsx .xml .zip
    """
)


def _is_ext(part: str) -> bool:
    lower = part.lower()
    if lower in _LONG_EXTS:
        return True
    return bool(_EXT.fullmatch(part)) and any(c.isalpha() for c in part)


def split_ext(name: str) -> tuple[str, str]:
    """``("conan-2.5.0", ".tar.gz")`` for ``conan-2.5.0.tar.gz``; ``("x", "")`` for ``x``.

    The last extension must be short (at most 5 letters/digits, with a letter, or a known
    longer one such as ``.manifest``); one more is taken when it is a common inner
    extension (``.tar.gz``, ``.dll.mui``, ``.txt.tmp``). A leading dot is part of the stem
    (``.gitignore`` has no extension).
    """
    dot = name.rfind(".")
    if dot <= 0 or not _is_ext(name[dot:]):
        return name, ""
    stem, ext = name[:dot], name[dot:]
    inner = stem.rfind(".")
    if inner > 0 and stem[inner:].lower() in _INNER_EXTS:
        stem, ext = stem[:inner], stem[inner:] + ext
    return stem, ext
